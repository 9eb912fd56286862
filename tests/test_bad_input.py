"""Every bad input is refused before work starts: one table, one row per case, for every verb.

Each row runs ``paddleseg ARGV`` in this process and expects exit status 2 within seconds, a last stderr
line ``paddleseg VERB: error: ...`` holding the expected text, and nothing written (the folder tree is
the same before and after). A row is ``(argv, setup, expected)``:

* ``argv``: leading ``NAME=VALUE`` items set environment variables, as in a shell;
* ``setup``: path -> what is put there: ``'file'``, ``'dir'`` or ``'readonly'`` (a folder mode 0o500;
  where that does not stop this user, i.e. root, writes into it fail by injection instead), or a function
  ``f(path, names)`` that makes or damages it (see the helpers below);
* ``expected``: text of the error line.

Placeholders: ``{tmp}`` the test's folder; ``{config}`` a tiny training config (``tests/conftest.py``) on
the shared synthetic Cityscapes data, or on its copy ``{data}`` when a row names ``{data}`` (to damage it);
``{ckpt}`` random weights of that config's model; ``{image}`` one of its images; ``{city}`` a Cityscapes
tree, ``{voc}`` / ``{sbd}`` VOC 2012 and SBD trees (for ``prepare``); ``{url}`` a download URL whose cache
entry is ``entry``.
"""
import errno
import glob
import os
import shutil
import time
from pathlib import Path

import cv2
import paddle
import pytest
import yaml

from conftest import tiny_config_dict, write_config
import paddle_psp_cli as cli
from paddle_psp.config import load_config
from paddle_psp.core import outputs
from paddle_psp.engine import checkpoint as ckpt
from paddle_psp.weights import fetch, hub
from test_prepare import make_cityscapes, make_voc_sbd


# ------------------------------------------------------------------------------ setup helpers (rows use them)
def text(content):
    """Setup: write ``content`` to the path."""
    return lambda path, names: path.write_text(content)


def config(edit):
    """Setup: the tiny config, changed by ``edit(dic)``, written to the path."""
    def make(path, names):
        dic = tiny_config_dict(names['data'])
        edit(dic)
        path.write_text(yaml.safe_dump(dic, sort_keys=False))
    return make


def labels(split, value=None, size=None, first_only=False):
    """Setup (on ``{data}``): set every pixel of the ``split`` labels to ``value`` (so that any random crop of a
    training run, whatever its drawn seed, holds it), or resize them to ``size``."""
    def damage(path, names):
        files = sorted(glob.glob(os.path.join(names['data'], 'gtFine', split, '*', '*.png')))
        for file in files[:1] if first_only else files:
            label = cv2.imread(file, cv2.IMREAD_UNCHANGED)
            if value is not None:
                label[:] = value
            cv2.imwrite(file, cv2.resize(label, size, interpolation=cv2.INTER_NEAREST) if size else label)
    return damage


def images(split, content):
    """Setup (on ``{data}``): replace the ``split`` images by ``content`` bytes."""
    def damage(path, names):
        for file in glob.glob(os.path.join(names['data'], 'leftImg8bit', split, '*', '*.png')):
            Path(file).write_bytes(content)
    return damage


def remove_image(path, names):
    """Setup (on ``{data}``): delete the third training image."""
    os.remove(sorted(glob.glob(os.path.join(names['data'], 'leftImg8bit', 'train', '*', '*.png')))[2])


def run_checkpoints(run_id, iters=(3, 6), best=False):
    """Setup: a save_dir holding run ``run_id``'s (weightless) checkpoints ``iter_N``."""
    def make(path, names):
        for iteration in iters:
            ckpt.save_checkpoint(str(path), f'iter_{iteration}', {}, {}, {'iter': iteration, 'run_id': run_id})
        if best:
            ckpt.save_checkpoint(str(path), ckpt.BEST_DIR, {}, None, {'iter': max(iters, default=1), 'run_id': run_id})
    return make


def incomplete_checkpoint(path, names):
    """Setup: a checkpoint directory whose save was interrupted before model.pdopt and checkpoint.json (with both
    model files and no checkpoint.json it would be PaddleSeg's layout, which resumes)."""
    path.mkdir(parents=True)
    paddle.save(load_config(names['config']).model.state_dict(), str(path / 'model.pdparams'))


def deep_yaml(depth):
    return text('iters: ' + '[' * depth + ']' * depth + '\n')


ALIAS_BOMB = text('a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n' + ''.join(
    f'{b}: &{b} [' + ', '.join([f'*{a}'] * 9) + ']\n' for a, b in zip('abcdefgh', 'bcdefghi')))


URL = 'http://127.0.0.1:9/paddleseg/dygraph/entry/model.pdparams'
CACHE = '{tmp}/home/pretrained_model'
VOC = ['prepare', 'voc12aug', '--voc', '{voc}', '--sbd', '{sbd}']
CITY = ['prepare', 'cityscapes', '--root', '{city}']
LABEL = '{city}/gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png'
TRAIN = ['train', '--config', '{config}', '--save_dir', '{tmp}/out', '--save_interval', '1', '--iters', '2']
MODEL = ['--config', '{config}', '--model_path', '{ckpt}']
VAL = ['val', *MODEL, '--dygraph']
PREDICT = ['predict', *MODEL, '--image_path', '{image}', '--dygraph']
EXPORT = ['export', *MODEL]
BENCHMARK = ['benchmark', *MODEL, '--dygraph']
NO_VNNI = ['ONEDNN_MAX_CPU_ISA=AVX2', 'PADDLE_PSP_UNSAFE_INT8=0']
INT8_REFUSED = '--quantize int8: ONEDNN_MAX_CPU_ISA=AVX2 caps oneDNN below VNNI'

LOG_LEVEL_REFUSED = "PADDLE_PSP_LOG_LEVEL='{}': expected one of DEBUG, INFO, WARNING, ERROR (or unset: INFO)"
ROWS = [
    (['PADDLE_PSP_LOG_LEVEL=loud', *TRAIN], {}, LOG_LEVEL_REFUSED.format('loud')),
    (['PADDLE_PSP_LOG_LEVEL=verbose', 'models'], {}, LOG_LEVEL_REFUSED.format('verbose')),
    (['PADDLE_PSP_TRAIN_MALLOC=fast', *TRAIN], {}, "PADDLE_PSP_TRAIN_MALLOC='fast': expected one of release, reuse"),
    (['SEG_HOME=', 'download', URL], {}, 'SEG_HOME: empty path'),
    (['SEG_HOME={tmp}/file', 'download', URL], {'{tmp}/file': 'file'}, 'SEG_HOME: {tmp}/file is a file'),
    (['SEG_HOME={tmp}/file/home', 'download', URL], {'{tmp}/file': 'file'},
     'cannot be created: {tmp}/file is a file'),
    (['SEG_HOME={tmp}/home', 'download', URL], {CACHE: 'file'}, 'cannot be created: ' + CACHE + ' is a file'),
    (['SEG_HOME={tmp}/home', 'download', URL], {CACHE + '/entry': 'file'}, CACHE + '/entry: is a file'),
    (['SEG_HOME={tmp}/home', 'download', URL], {CACHE + '/entry/model.pdparams.part': 'dir'},
     CACHE + '/entry/model.pdparams.part: is a directory'),
    (['SEG_HOME={tmp}/home', 'download', URL], {CACHE + '/entry.lock': 'dir'}, CACHE + '/entry.lock: is a directory'),
    (['SEG_HOME={tmp}/ro', 'download', URL], {'{tmp}/ro': 'readonly'},
     '{tmp}/ro/pretrained_model/entry: not writable ({tmp}/ro: '),
    (['prepare', 'cityscapes', '--root', ''], {}, '--root: empty path'),
    (['prepare', 'cityscapes', '--root', '{tmp}/file'], {'{tmp}/file': 'file'}, '{tmp}/file: not a directory'),
    (CITY, {'{city}/train.txt': 'dir'}, '{city}/train.txt: is a directory'),
    (CITY, {LABEL: 'dir'}, LABEL + ': is a directory'),
    (CITY, {'{city}/gtFine/val/lindau': 'readonly'}, '{city}/gtFine/val/lindau: not writable'),
    (CITY, {'{city}': 'readonly'}, '{city}: not writable'),
    (['prepare', 'voc12aug', '--voc', '', '--sbd', '{sbd}'], {}, '--voc: empty path'),
    (['prepare', 'voc12aug', '--voc', '{voc}', '--sbd', ''], {}, '--sbd: empty path'),
    (VOC, {'{voc}/VOC2012/SegmentationClassAug': 'file'}, '{voc}/VOC2012/SegmentationClassAug: is a file'),
    (VOC, {'{voc}/VOC2012/ImageSets/Segmentation/aug.txt': 'dir'}, 'aug.txt: is a directory'),
    (VOC, {'{voc}/VOC2012': 'readonly'}, '{voc}/VOC2012/SegmentationClassAug: not writable ({voc}/VOC2012: '),
    # ------------------------------------------------------------------ train: flags, config, data, runs
    (['train', '--config', '{tmp}/nope.yml'], {}, 'nope.yml: config file not found'),
    (['train', '--config', '{tmp}/bad.yml'], {'{tmp}/bad.yml': text('iters: 3\nmodel: {type: [\n')},
     'bad.yml:3: malformed YAML'),
    (['train', '--config', '{tmp}/deep.yml'], {'{tmp}/deep.yml': deep_yaml(3000)}, 'nested more than 50 levels'),
    (['train', '--config', '{tmp}/bomb.yml'], {'{tmp}/bomb.yml': ALIAS_BOMB}, 'aliases expand too far'),
    (['train', '--config', '{tmp}/loop.yml'], {'{tmp}/loop.yml': text('a: &a [*a]\n')},
     'an alias refers to a node that contains it'),
    (['train', '--config', '{tmp}/c.yml'], {'{tmp}/c.yml': config(lambda d: d.update(itres=3))},
     'c.yml: itres: not a key PaddleSeg configs use; did you mean iters?'),
    (['train', '--config', '{tmp}/c.yml'], {'{tmp}/c.yml': config(lambda d: d.update(to_static_training='yes'))},
     "c.yml: to_static_training: expected true or false, got 'yes'"),
    (['train', '--config', '{tmp}/c.yml'], {'{tmp}/c.yml': config(lambda d: d['model'].update(num_classes=5))},
     'model.num_classes: 5 but train_dataset (Cityscapes) has 19 classes'),
    (['train', '--config', '{tmp}/c.yml'], {'{tmp}/c.yml': config(
        lambda d: d['val_dataset']['transforms'].insert(0, {'type': 'Resize', 'target_size': [0, 64]}))},
     'val_dataset.transforms.0.target_size: [0, 64]; expected positive sizes'),
    (TRAIN + ['--opts', 'train_dataset.transforms.1.crop_size=[-64,64]'], {},
     'train_dataset.transforms.1.crop_size: [-64, 64]; expected positive sizes'),
    (TRAIN + ['--opts', 'model.backbone.type=ResNet50'], {}, "model.backbone.type: unknown type 'ResNet50'"),
    (TRAIN + ['--opts', 'train_dataset.crop=[8,8]'], {}, "--opts train_dataset.crop: unknown key 'train_dataset.crop'"),
    (TRAIN + ['--opts', 'train_dataset.dataset_root={tmp}/none'], {}, 'paddleseg prepare cityscapes --root'),
    (TRAIN + ['--batch_size', '9'], {}, 'batch_size: 9 is larger than train_dataset'),
    (TRAIN + ['--precision', 'fp16', '--device', 'cpu'], {}, 'GPU only'),
    (TRAIN + ['--save_interval', '0'], {}, '--save_interval: expected a positive'),
    (TRAIN, {'{data}': labels('train', value=19)}, 'label values [19] outside [0, 19)'),
    (TRAIN + ['--batch_size', '1'], {'{data}': labels('train', size=(64, 32), first_only=True)},
     'gtFine_labelTrainIds.png: label is 64x32 but its image'),
    (TRAIN, {'{data}': labels('train', size=(64, 32), first_only=True)},
     'gtFine_labelTrainIds.png: label is 64x32 but its image'),
    (TRAIN, {'{data}': images('train', b'not a png')}, '_leftImg8bit.png: unreadable image'),
    (TRAIN, {'{data}': remove_image}, '_gtFine_labelTrainIds.png: has no image in train_dataset'),
    (TRAIN + ['--resume_model', '{tmp}/old/iter_2'], {'{tmp}/old/iter_2': incomplete_checkpoint},
     'iter_2: incomplete checkpoint (no checkpoint.json'),
    (TRAIN + ['--resume_model', '{tmp}/none/iter_2'], {}, '{tmp}/none/iter_2: no such checkpoint directory'),
    (TRAIN, {'{tmp}/out': run_checkpoints('other')},
     '--save_dir {tmp}/out: holds checkpoints of another run (iter_3 .. iter_6); expected another --save_dir for '
     'a new run, or --resume_model {tmp}/out/iter_6 (or auto)'),
    (TRAIN, {'{tmp}/out': run_checkpoints('other', iters=(), best=True)},
     'holds checkpoints of another run (best_model)'),
    (TRAIN + ['--resume_model', '{tmp}/mine/iter_6'],
     {'{tmp}/out': run_checkpoints('other', iters=(1,)), '{tmp}/mine': run_checkpoints('mine')},
     '--save_dir {tmp}/out: holds checkpoints of another run (iter_1)'),
    (TRAIN + ['--save_dir', ''], {}, '--save_dir: empty path'),
    (TRAIN + ['--save_dir', '{tmp}/file'], {'{tmp}/file': 'file'}, '--save_dir {tmp}/file: is a file'),
    (TRAIN + ['--save_dir', '{tmp}/file/out'], {'{tmp}/file': 'file'}, 'cannot be created: {tmp}/file is a file'),
    (TRAIN + ['--save_dir', '{tmp}/ro/out'], {'{tmp}/ro': 'readonly'}, '--save_dir {tmp}/ro/out: not writable'),
    # -------------------------------------------------------------------------- val, predict, export, benchmark
    (VAL, {'{data}': labels('val', value=19)}, 'gtFine_labelTrainIds.png: label values [19] outside [0, 19)'),
    (VAL, {'{data}': labels('val', value=30)}, 'label values [30] outside [0, 19) and not the ignore index 255'),
    (VAL, {'{data}': labels('val', size=(64, 32), first_only=True)},
     'gtFine_labelTrainIds.png: label is 64x32 but its image'),
    (VAL[:2] + ['{tmp}/c.yml'] + VAL[3:], {'{tmp}/c.yml': config(lambda d: d['model'].update(num_classes=5))},
     'model.num_classes: 5 but'),
    (VAL + ['--quantize', 'int8'], {}, '--quantize int8: runs on the fast CPU path; expected it without --dygraph'),
    (PREDICT + ['--save_dir', ''], {}, '--save_dir: empty path'),
    (PREDICT + ['--save_dir', '{tmp}/file'], {'{tmp}/file': 'file'}, '--save_dir {tmp}/file: is a file'),
    (PREDICT + ['--save_dir', '{tmp}/ro'], {'{tmp}/ro': 'readonly'}, '--save_dir {tmp}/ro: not writable'),
    (PREDICT + ['--save_dir', '{tmp}/out'], {'{tmp}/out/added_prediction': 'file'},
     '{tmp}/out/added_prediction: is a file'),
    (EXPORT + ['--save_dir', ''], {}, '--save_dir: empty path'),
    (EXPORT + ['--save_dir', '{tmp}/file'], {'{tmp}/file': 'file'}, '--save_dir {tmp}/file: is a file'),
    (EXPORT + ['--save_dir', '{tmp}/ro'], {'{tmp}/ro': 'readonly'}, '--save_dir {tmp}/ro: not writable'),
    (EXPORT + ['--save_dir', '{tmp}/out'], {'{tmp}/out/deploy.yaml': 'dir'}, '{tmp}/out/deploy.yaml: is a directory'),
    (EXPORT + ['--quantize', 'int8', '--calib_images', '0'], {}, '--calib_images 0: expected a positive number'),
    (EXPORT[:2] + ['{tmp}/c.yml'] + EXPORT[3:] + ['--quantize', 'int8'],
     {'{tmp}/c.yml': config(lambda d: d.pop('train_dataset'))}, 'train_dataset: missing'),
    (BENCHMARK + ['--save_dir', '{tmp}/file'], {'{tmp}/file': 'file'}, '--save_dir {tmp}/file'),
    (BENCHMARK + ['--save_dir', ''], {}, '--save_dir'),
    (BENCHMARK + ['--quantize', 'int8', '--save_dir', '{tmp}/out'], {},
     '--quantize int8: runs on the fast CPU path; expected it without --dygraph'),
    (BENCHMARK[:-1] + ['--quantize', 'int8', '--calib_images', '0', '--save_dir', '{tmp}/out'], {},
     '--calib_images 0: expected a positive number'),
    # int8 where oneDNN's int8 convolutions saturate (capped below VNNI here; CPU flags: tests/test_int8_cpu.py)
    ([*NO_VNNI, *VAL[:-1], '--quantize', 'int8'], {}, INT8_REFUSED),
    ([*NO_VNNI, *PREDICT[:-1], '--quantize', 'int8', '--save_dir', '{tmp}/out'], {}, INT8_REFUSED),
    ([*NO_VNNI, *BENCHMARK[:-1], '--quantize', 'int8', '--save_dir', '{tmp}/out'], {}, INT8_REFUSED),
]


def tree(root):
    """Every path under ``root`` with its kind, size and mode."""
    return {str(p): (p.is_dir(), p.is_file() and p.stat().st_size, p.stat().st_mode)
            for p in sorted(Path(root).rglob('*'))}


def make_read_only(folder, monkeypatch):
    """Mode 0o500; where this user can still write there (root), make writes into it fail instead."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o500)
    try:
        outputs.probe_write(str(folder))
    except PermissionError:
        return
    probe = outputs.probe_write

    def refuse_in_folder(path):
        if Path(path).resolve() == folder.resolve():
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        probe(path)

    monkeypatch.setattr(outputs, 'probe_write', refuse_in_folder)



@pytest.fixture(scope='module')
def random_weights(synthetic_root, tmp_path_factory):
    """Random weights of the tiny config's model (for val, predict, export and benchmark rows)."""
    path = str(tmp_path_factory.mktemp('weights') / 'tiny.pdparams')
    paddle.seed(0)
    paddle.save(load_config(write_config(os.path.dirname(path), data_root=synthetic_root)).model.state_dict(), path)
    return path


@pytest.fixture
def place(tmp_path, monkeypatch, synthetic_root, random_weights):
    """``place(argv, setup)``: build what ``argv`` names, make the setup, return argv filled in and the names."""
    folders = []

    def build(argv, setup):
        names = {'tmp': str(tmp_path), 'ckpt': random_weights}
        text = ' '.join(argv) + ' '.join(setup)
        if '{city}' in text:
            names['city'] = str(tmp_path / 'city')
            make_cityscapes(names['city'])
        if '{voc}' in text or '{sbd}' in text:
            voc, sbd, _, _ = make_voc_sbd(tmp_path / 'vocsbd')
            names.update(voc=str(voc), sbd=str(sbd))
        names['data'] = str(shutil.copytree(synthetic_root, tmp_path / 'data')) if '{data}' in text else synthetic_root
        names['config'] = write_config(tmp_path, data_root=names['data'])
        names['image'] = sorted(glob.glob(os.path.join(synthetic_root, 'leftImg8bit', 'val', '*', '*.png')))[0]
        for where, what in setup.items():
            path = Path(where.format(**names))
            if what == 'readonly':
                make_read_only(path, monkeypatch)
                folders.append(path)
            elif callable(what):
                what(path, names)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.mkdir() if what == 'dir' else path.write_text('in the way')
        return [item.format(**names) for item in argv], names

    yield build
    for folder in folders:
        folder.chmod(0o700)


@pytest.mark.parametrize('argv, setup, expected', ROWS)
def test_bad_input_stops_at_once_writing_nothing(argv, setup, expected, place, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(hub, 'DEFAULT_RETRY', fetch.RetryPolicy(attempts=1, timeout=1, deadline=1))
    monkeypatch.delenv('SEG_HOME', raising=False)
    argv, names = place(argv, setup)
    while '=' in argv[0]:
        name, value = argv.pop(0).split('=', 1)
        monkeypatch.setenv(name, value)
    before = tree(tmp_path)
    capsys.readouterr()
    start = time.monotonic()
    assert cli.main(argv) == 2
    assert time.monotonic() - start < 30  # a tiny model: building it and reading a batch take seconds
    err = capsys.readouterr().err.strip()
    line = err.splitlines()[-1]
    assert line.startswith(f'paddleseg {argv[0]}: error: '), err[-2000:]
    assert expected.format(**names) in line
    assert tree(tmp_path) == before
