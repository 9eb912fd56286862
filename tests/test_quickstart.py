"""`paddleseg quickstart`: a real (shortened) run trains a model that clearly beats chance; bad input."""
import glob
import json
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest
from PIL import Image

from conftest import SUBPROCESS_ENV
import paddle_psp_cli as cli
from paddle_psp import quickstart
from paddle_psp.config import load_config
from paddle_psp.weights.zoo import TABLE_HEADER

SHORT_ITERS = 40  # the full quickstart trains 120; 40 keeps this test near two minutes
MIOU_FLOOR = 0.35  # measured 0.49 at 40 iterations; chance is 0.08 (majority class) / 0.20 (uniform)


@pytest.fixture(scope='module')
def short_run(tmp_path_factory):
    """One shortened quickstart in a subprocess (fast convolutions via MKL_DEBUG_CPU_TYPE)."""
    save_dir = tmp_path_factory.mktemp('quickstart') / 'out'
    command = [sys.executable, '-m', 'paddle_psp_cli', 'quickstart', '--save_dir', str(save_dir), '--iters',
               str(SHORT_ITERS)]
    env = dict(os.environ, PADDLE_PSP_CACHE=str(save_dir.parent / 'inference_cache'), **SUBPROCESS_ENV)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return save_dir, done.stdout


def test_short_quickstart_trains_a_model_that_beats_chance(short_run):
    save_dir, stdout = short_run
    summary = json.loads((save_dir / 'summary.json').read_text())
    match = re.search(r'mIoU (\d+\.\d\d)% on 8 val images vs chance (\d+\.\d\d)% \(predicting \'(\w+)\'.*'
                      r'1/(\d) classes present = (\d+\.\d\d)%', stdout)
    assert match, stdout
    miou, chance, majority, present, uniform = match.groups()
    assert float(miou) == pytest.approx(summary['mIoU']['miou'] * 100, abs=0.005)
    assert int(present) == 5 and majority == summary['chance']['majority_class']
    assert summary['mIoU']['miou'] >= MIOU_FLOOR
    assert float(miou) > 1.5 * max(float(chance), float(uniform))
    assert summary['iters'] == SHORT_ITERS and summary['imagenet_weights'] is False
    assert 'no ImageNet weights' in stdout


def test_quickstart_prints_the_three_column_table_and_keeps_its_outputs(short_run):
    save_dir, stdout = short_run
    lines = stdout.splitlines()
    header = lines.index(TABLE_HEADER)
    row = lines[header + 2].strip('|').split('|')
    assert row[:4] == ['PSPNet', 'ResNet50_OS8', '128x128', str(SHORT_ITERS)]
    assert all(re.fullmatch(r'\d+\.\d\d%', cell) for cell in row[4:7])
    assert os.path.isfile(save_dir / 'train' / f'iter_{SHORT_ITERS}' / 'model.pdparams')
    records = glob.glob(str(save_dir / 'train' / 'vdlrecords.*.log'))
    assert records and os.path.getsize(records[0]) > 0
    results = json.loads((save_dir / 'benchmark' / 'benchmark.json').read_text())
    assert results['entries'][0]['num_images'] == 8 and results['entries'][0]['timings']['forwards'] == 48


def test_second_quickstart_needs_overwrite(short_run, capsys):
    save_dir, _ = short_run
    before = (save_dir / 'summary.json').read_text()
    assert cli.main(['quickstart', '--save_dir', str(save_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'exists (an earlier quickstart); expected --overwrite' in err
    assert (save_dir / 'summary.json').read_text() == before


def test_unwritable_save_dir_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / 'file').write_text('')
    assert cli.main(['quickstart', '--save_dir', str(tmp_path / 'file' / 'out')]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'cannot write there' in err


def test_quickstart_config_is_the_small_pspnet_r50_os8():
    cfg = load_config(quickstart.find_config())
    model = cfg.dic['model']
    assert model['type'] == 'ZooPSPNet' and model['backbone']['type'] == 'ZooResNet50_vd'
    assert model['backbone']['output_stride'] == 8 and not model['backbone']['pretrained']
    assert cfg.iters == 72 and model['pp_out_channels'] == 64


def test_chance_level_is_the_majority_class_of_train_scored_on_val(tmp_path):
    def dataset(name, labels):
        paths = []
        for index, label in enumerate(labels):
            path = str(tmp_path / f'{name}{index}.png')
            Image.fromarray(np.array(label, np.uint8)).save(path)
            paths.append((None, path))
        return types.SimpleNamespace(file_list=paths, num_classes=19, ignore_index=255)
    train = dataset('train', [[[10, 10, 0], [10, 255, 255]], [[0, 13, 10], [255, 255, 255]]])  # sky (10) wins
    val = dataset('val', [[[10, 0, 0, 13], [2, 2, 255, 255]]])
    chance = quickstart.chance_level(train, val)
    # predicting sky everywhere on val: sky IoU 1/6, road 0, car 0, building 0 -> mean over 4 present classes
    assert chance['majority_class'] == 'sky'
    assert chance['majority_mIoU'] == pytest.approx((1 / 6) / 4)
    assert chance['present_classes'] == 4 and chance['uniform_mIoU'] == 0.25
