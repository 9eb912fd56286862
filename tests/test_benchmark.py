"""`paddleseg benchmark`: three columns from one pass equal three `paddleseg val` runs; resume after SIGKILL;
zoo entries through a mirror; bad input; progress and output formats."""
import functools
import http.server
import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import paddle
import pytest
import yaml

from conftest import SUBPROCESS_ENV, tiny_config_dict, write_config
import paddle_psp_cli as cli
from paddle_psp import benchmark
from paddle_psp.inference import quantize, tta
from paddle_psp.benchmark import cli as benchmark_cli
from paddle_psp.benchmark.runner import drop_pretrained
from paddle_psp.core import runtime
from paddle_psp.core.errors import UserError
from paddle_psp.core.log import logger
from paddle_psp.evaluation import evaluate
from paddle_psp.config import build_val_dataset, load_config
from paddle_psp.weights.state_dict import load_for_eval
from tolerances import near_tie_pixels
from paddle_psp.weights import zoo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_SCRIPT = os.path.join(REPO, 'benchmarks', 'run.py')
ZOO_NAME = 'pspnet_resnet50_os8_cityscapes_1024x512_80k'
NUM_VAL = 4  # conftest's synthetic dataset


@pytest.fixture(scope='module')
def setup(synthetic_root, tmp_path_factory):
    """A tiny PSPNet config with a random checkpoint, and a DeepLabV3 checkpoint (another model)."""
    directory = tmp_path_factory.mktemp('benchmark')
    paths = {'root': synthetic_root, 'dir': directory}
    for model in ('ZooPSPNet', 'ZooDeepLabV3'):
        config = write_config(directory, name=model + '.yml', data_root=synthetic_root, model=model)
        paddle.seed(3)
        checkpoint = str(directory / (model + '.pdparams'))
        paddle.save(load_config(config).model.state_dict(), checkpoint)
        paths[model] = (config, checkpoint)
    paths['config'], paths['checkpoint'] = paths['ZooPSPNet']
    paths['full_pyramid'] = write_full_pyramid_config(directory, synthetic_root)
    return paths


def write_full_pyramid_config(directory, data_root):
    """The tiny PSPNet with the zoo's pyramid bins (1, 2, 3, 6), whose pools do not divide every feature
    size, and its random checkpoint."""
    dic = tiny_config_dict(data_root)
    dic['model']['bin_sizes'] = [1, 2, 3, 6]
    config = str(directory / 'full_pyramid.yml')
    with open(config, 'w') as file:
        yaml.safe_dump(dic, file, sort_keys=False)
    paddle.seed(1)
    checkpoint = str(directory / 'full_pyramid.pdparams')
    paddle.save(load_config(config).model.state_dict(), checkpoint)
    return config, checkpoint


def run_benchmark(setup, save_dir, *extra):
    """benchmark_cli.main on the tiny config (dygraph, as paddleseg val); returns the written JSON."""
    assert benchmark_cli.main(['--config', setup['config'], '--model_path', setup['checkpoint'], '--dygraph',
                               '--save_dir', str(save_dir), *extra]) == 0
    with open(os.path.join(save_dir, benchmark.RESULTS_JSON)) as file:
        return json.load(file)


def val_scores(setup, *flags):
    """The scores one `paddleseg val` run (evaluate.main) computes (on the dygraph model, except with --quantize,
    which runs on the fast path)."""
    path = [] if '--quantize' in flags else ['--dygraph']
    return evaluate.main(['--config', setup['config'], '--model_path', setup['checkpoint'], *path, *flags])


@pytest.fixture(scope='module')
def full_run(setup, tmp_path_factory):
    """One uninterrupted benchmark of the tiny checkpoint (default scales, current TTA)."""
    save_dir = tmp_path_factory.mktemp('full_run')
    return save_dir, run_benchmark(setup, save_dir)


# (aug, scales, flip_horizontal) of each column, as the separate val runs below ask for them
COLUMN_TTA = {'miou': (False, (1.0,), False), 'miou_flip': (True, (1.0,), True),
              'miou_ms_flip': (True, (0.75, 1.0, 1.25), True)}
SEPARATE_RUNS = {
    'miou': [],
    'miou_flip': ['--aug_eval', '--flip_horizontal'],
    'miou_ms_flip': ['--aug_eval', '--scales', '0.75', '1.0', '1.25', '--flip_horizontal'],
}


def assert_columns_equal_val_runs(entry, setup, legacy_flags=()):
    for column, flags in SEPARATE_RUNS.items():
        separate = val_scores(setup, *(flags + list(legacy_flags) if flags else flags))
        ours = entry['columns'][column]
        np.testing.assert_array_equal(np.array(ours['confusion']), separate['confusion'], err_msg=column)
        assert abs(ours['mIoU'] - separate['mIoU']) <= 1e-12, column
        assert ours['Acc'] == pytest.approx(separate['Acc'], abs=1e-12)
    confusions = [np.array(entry['columns'][c]['confusion']) for c in benchmark.COLUMNS]
    # the columns differ from each other, so a swapped or shared column would be caught
    assert not np.array_equal(confusions[0], confusions[1]) and not np.array_equal(confusions[1], confusions[2])


def test_three_columns_from_one_pass_equal_three_val_runs(full_run, setup):
    _, results = full_run
    entry = results['entries'][0]
    assert entry['num_images'] == NUM_VAL
    assert_columns_equal_val_runs(entry, setup)
    timings = entry['timings']
    assert entry['plan']['forwards_per_image'] == 6 and entry['plan']['forwards_per_image_separate_runs'] == 9
    assert timings['forwards'] == 6 * NUM_VAL and timings['forward_calls'] == 3 * NUM_VAL
    assert timings['images_per_second'] > 0
    assert 0 < timings['seconds_per_forward'] < timings['seconds'] / NUM_VAL


def test_legacy_columns_equal_three_legacy_val_runs(setup, tmp_path):
    results = run_benchmark(setup, tmp_path, '--legacy_tta')
    entry = results['entries'][0]
    assert_columns_equal_val_runs(entry, setup, legacy_flags=['--legacy_tta'])
    # scale 1.0 of the chained ms+flip set is not the plain image: the 1.0 pair runs on its own
    assert entry['plan']['forwards_per_image'] == 8 and entry['timings']['forwards'] == 8 * NUM_VAL


def test_default_fast_path_agrees_with_the_dygraph_path(setup, tmp_path, monkeypatch):
    """Without --dygraph the benchmark runs the fast path (paddle_psp.inference.forward): the same numbers up to
    float rounding, although the input size changes between passes: in each column only pixels at near ties of
    the dygraph logits (tolerances.near_tie_pixels) may change class."""
    monkeypatch.setenv('PADDLE_PSP_CACHE', str(tmp_path / 'cache'))
    config, checkpoint = setup['full_pyramid']
    entries = {}
    for path in ('fast', 'dygraph'):
        flags = ['--dygraph'] if path == 'dygraph' else []
        assert benchmark_cli.main(['--config', config, '--model_path', checkpoint,
                                   '--save_dir', str(tmp_path / path), *flags]) == 0
        results = json.loads((tmp_path / path / benchmark.RESULTS_JSON).read_text())
        assert results['environment']['forward'] == ('dygraph' if path == 'dygraph' else 'fast_forward')
        entries[path] = results['entries'][0]
    cfg = load_config(config)
    forward = tta.layer_forward(load_for_eval(cfg.build_model(pretrained=False), checkpoint))
    for column in benchmark.COLUMNS:
        options = tta.InferOptions.create(*COLUMN_TTA[column])
        ties = sum(near_tie_pixels(tta.infer_logits(forward, cfg.val_dataset[index]['img'], options=options), axis=0)
                   for index in range(len(cfg.val_dataset)))
        fast, slow = (np.array(entries[p]['columns'][column]['confusion']) for p in ('fast', 'dygraph'))
        moved = int(np.abs(fast - slow).sum() // 2)
        assert moved <= ties, f'{column}: {moved} of {slow.sum()} pixels change class, {ties} at near ties'


def test_profile_logs_the_start_up_breakdown_once(setup, tmp_path, capsys):
    """--profile: one line, from process start to the first target's first forward; none without it."""
    run_benchmark(setup, tmp_path / 'profiled', '--profile')
    lines = [line for line in capsys.readouterr().err.splitlines() if 'start-up:' in line]
    assert len(lines) == 1, lines
    stages = re.findall(r'([a-z][a-z ]*?) (\d+\.\d\d) s', lines[0].split('start-up: ', 1)[1])
    names = [name for name, _ in stages]
    assert names[:2] == ['imports', 'config and dataset'] and names[-2:] == ['first forward', 'total'], names
    assert abs(sum(float(s) for _, s in stages[:-1]) - float(stages[-1][1])) < 0.05
    run_benchmark(setup, tmp_path / 'plain')
    assert 'start-up:' not in capsys.readouterr().err


def test_results_json_and_markdown(full_run):
    save_dir, results = full_run
    entry = results['entries'][0]
    column = entry['columns']['miou_ms_flip']
    assert set(column['class_IoU']) >= {'road', 'building', 'vegetation', 'sky', 'car'}
    assert column['class_IoU']['train'] is None  # neither labelled nor predicted: undefined, not 0
    assert np.array(column['confusion']).shape == (19, 19) and np.array(column['confusion']).sum() > 0
    assert 'published' not in column  # not a zoo checkpoint
    assert entry['peak_memory']['rss_bytes'] > 50 * 2 ** 20
    env = results['environment']
    assert env['versions']['paddle'] == paddle.__version__ and env['versions']['paddleseg'] == '2.8.0'
    assert env['device']['paddle'] == 'cpu' and env['forward'] == 'dygraph'
    assert env['device']['math_threads'] == runtime.math_threads()  # the count its dygraph forward ran on
    table = open(os.path.join(save_dir, benchmark.RESULTS_MARKDOWN)).read()
    lines = table.splitlines()
    assert lines[:4] == ['### Cityscapes', '', zoo.TABLE_HEADER, zoo.TABLE_ALIGN]
    cells = lines[4].strip('|').split('|')
    assert cells[:4] == ['PSPNet', 'ResNet50_OS8', '64x64', '4']
    assert cells[4:7] == [f'{entry["columns"][c]["mIoU"] * 100:.2f}%' for c in benchmark.COLUMNS]
    assert cells[7] == f'[model]({entry["checkpoint"]["path"]})'


def test_kill_mid_run_and_resume_equals_uninterrupted_run(setup, tmp_path, capsys):
    """A real process is SIGKILLed after k images; --resume scores the rest; nothing lost or counted twice."""
    options = ['--config', setup['config'], '--model_path', setup['checkpoint'], '--dygraph']
    args = [sys.executable, RUN_SCRIPT] + options
    env = dict(os.environ, **SUBPROCESS_ENV)
    killed = tmp_path / 'killed'
    progress = killed / benchmark.PROGRESS_DIR / 'ZooPSPNet.jsonl'
    process = subprocess.Popen(args + ['--save_dir', str(killed)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if progress.exists() and progress.read_bytes().count(b'\n') >= 2:  # header + one image
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = progress.read_bytes().count(b'\n') - 1
    assert 1 <= done < NUM_VAL, f'the kill came after {done} of {NUM_VAL} images'
    assert not (killed / benchmark.RESULTS_JSON).exists()

    assert cli.main(['benchmark', '--save_dir', str(killed)] + options) == 2
    assert 'ZooPSPNet.jsonl: exists (an earlier benchmark); expected --resume' in capsys.readouterr().err
    subprocess.run(args + ['--save_dir', str(killed), '--resume'], env=env, check=True, capture_output=True)
    fresh = tmp_path / 'fresh'
    subprocess.run(args + ['--save_dir', str(fresh)], env=env, check=True, capture_output=True)

    resumed = json.loads((killed / benchmark.RESULTS_JSON).read_text())['entries'][0]
    uninterrupted = json.loads((fresh / benchmark.RESULTS_JSON).read_text())['entries'][0]
    for column in benchmark.COLUMNS:
        assert resumed['columns'][column]['confusion'] == uninterrupted['columns'][column]['confusion']
    assert resumed['timings']['session_images'] == NUM_VAL - done
    records = [json.loads(line) for line in progress.read_text().splitlines()[1:]]
    assert sorted(r['index'] for r in records) == list(range(NUM_VAL))


def test_torn_last_record_is_cut_off_and_its_image_scored_again(tmp_path):
    path = str(tmp_path / 'p.jsonl')
    log = benchmark.ProgressLog(path, {'a': 1})
    assert log.open() == {}
    log.append({'index': 0, 'image': 'x'})
    log.close()
    with open(path, 'ab') as file:
        file.write(b'{"index":1,"ima')  # killed mid-write
    log = benchmark.ProgressLog(path, {'a': 1})
    assert list(log.open()) == [0]
    log.append({'index': 1, 'image': 'y'})
    log.close()
    assert [json.loads(line)['index'] for line in open(path).read().splitlines()[1:]] == [0, 1]
    with pytest.raises(UserError, match='other settings'):
        benchmark.ProgressLog(path, {'a': 2}).open()


def test_second_process_on_the_same_progress_file_is_refused(tmp_path):
    path = str(tmp_path / 'p.jsonl')
    first = benchmark.ProgressLog(path, {'a': 1})
    first.open()
    try:
        with pytest.raises(UserError, match='another benchmark process'):
            benchmark.ProgressLog(path, {'a': 1}).open()
    finally:
        first.close()


def test_existing_results_need_resume_or_overwrite(full_run, setup, tmp_path):
    save_dir = tmp_path / 'again'
    shutil.copytree(full_run[0], save_dir)
    before = (save_dir / benchmark.RESULTS_JSON).read_text()
    with pytest.raises(UserError, match='expected --resume to continue it, --overwrite'):
        run_benchmark(setup, save_dir)
    assert (save_dir / benchmark.RESULTS_JSON).read_text() == before
    # everything is scored already: --resume only recomputes the tables from the records
    resumed = run_benchmark(setup, save_dir, '--resume')['entries'][0]
    assert resumed['timings']['session_images'] == 0
    assert resumed['columns'] == full_run[1]['entries'][0]['columns']
    with pytest.raises(UserError, match='other settings.*plan'):
        run_benchmark(setup, save_dir, '--resume', '--scales', '1.0', '1.5')
    overwritten = run_benchmark(setup, save_dir, '--overwrite', '--limit', '1', '--scales', '1.0', '1.5')
    entry = overwritten['entries'][0]
    assert entry['num_images'] == 1 and entry['num_images_available'] == NUM_VAL
    assert entry['timings']['forwards'] == 4  # scales 1.0 and 1.5, each with and without the flip
    assert '1 of 4 val images (--limit)' in (save_dir / benchmark.RESULTS_MARKDOWN).read_text()


def test_int8_benchmark_runs_the_int8_forward_and_resume_needs_the_same_quantization(setup, tmp_path, monkeypatch,
                                                                                   capsys):
    """--quantize int8: the val --quantize int8 forward (its cache entry), a table marked INT8, and a progress file
    that only the same --quantize and --calib_images resume (one error line otherwise, nothing touched)."""
    monkeypatch.setenv('PADDLE_PSP_CACHE', str(tmp_path / 'cache'))
    own = ['--config', setup['config'], '--model_path', setup['checkpoint'], '--scales', '1.0']
    int8 = ['--quantize', 'int8', '--calib_images', '2']
    save_dir = tmp_path / 'int8'
    assert cli.main(['benchmark', *own, *int8, '--save_dir', str(save_dir)]) == 0
    results = json.loads((save_dir / benchmark.RESULTS_JSON).read_text())
    entry = results['entries'][0]
    assert results['environment']['forward'] == 'fast_forward_int8' and results['settings']['calib_images'] == 2
    assert entry['quantize'] == {'mode': 'int8', 'calib_images': 2, 'algo': 'abs_max',
                                 'fp32_max_stride': quantize.FP32_MAX_STRIDE}
    table = (save_dir / benchmark.RESULTS_MARKDOWN).read_text()
    assert table.startswith('### Cityscapes (INT8, post-training quantized)\n')
    assert 'calibrated on the first 2 train_dataset images' in table
    entries = os.listdir(tmp_path / 'cache')
    separate = val_scores(setup, *int8)  # (val's --dygraph is dropped below: int8 runs on the fast path)
    assert sorted(os.listdir(tmp_path / 'cache')) == sorted(entries)  # the same int8 entry, found by its recipe
    moved = np.abs(np.array(entry['columns']['miou']['confusion']) - separate['confusion']).sum() // 2
    assert moved <= 0.001 * separate['confusion'].sum()  # the one batched flip pair may round differently

    before = {path: path.read_bytes() for path in save_dir.rglob('*') if path.is_file()}
    capsys.readouterr()
    for other in ([], ['--quantize', 'int8', '--calib_images', '3']):
        assert cli.main(['benchmark', *own, *other, '--save_dir', str(save_dir), '--resume']) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and 'ZooPSPNet.jsonl: was recorded with other settings' in err[0], err
        assert 'quantize' in err[0].split('(')[1]
        assert {path: path.read_bytes() for path in save_dir.rglob('*') if path.is_file()} == before
    assert cli.main(['benchmark', *own, *int8, '--save_dir', str(save_dir), '--resume']) == 0
    resumed = json.loads((save_dir / benchmark.RESULTS_JSON).read_text())['entries'][0]
    assert resumed['timings']['session_images'] == 0 and resumed['columns'] == entry['columns']

    fp32_dir = tmp_path / 'fp32'
    assert cli.main(['benchmark', *own, '--limit', '1', '--save_dir', str(fp32_dir)]) == 0
    capsys.readouterr()
    assert cli.main(['benchmark', *own, '--limit', '1', *int8, '--save_dir', str(fp32_dir), '--resume']) == 2
    assert 'was recorded with other settings (forward, quantize differ)' in capsys.readouterr().err


def config_without_train_dataset(directory, data_root):
    dic = tiny_config_dict(data_root)
    del dic['train_dataset']
    path = directory / 'no_train.yml'
    path.write_text(yaml.safe_dump(dic, sort_keys=False))
    return str(path)


def write_empty_dataset(root):
    for folder in ('leftImg8bit', 'gtFine'):
        os.makedirs(os.path.join(root, folder, 'val'))
    return root


@pytest.mark.parametrize('case', ['unknown_zoo', 'other_model', 'no_images', 'unwritable', 'zoo_and_config',
                                  'repeated_scale', 'int8_without_train_dataset'])
def test_bad_input_is_a_one_line_error(case, setup, tmp_path, capsys):
    base = ['benchmark', '--dygraph', '--save_dir', str(tmp_path / 'out')]
    own = ['--config', setup['config'], '--model_path', setup['checkpoint']]
    argv, expected = {
        'unknown_zoo': (['--zoo', 'pspnet_resnet18'], f'expected one of: {ZOO_NAME}, '),
        'other_model': (['--config', setup['config'], '--model_path', setup['ZooDeepLabV3'][1]],
                        'weights of another model'),
        'no_images': (own + ['--data_root', write_empty_dataset(str(tmp_path / 'empty'))],
                      'no val images found'),
        'unwritable': (own, 'cannot write there'),
        'zoo_and_config': (own + ['--zoo', 'all'], 'expected either --zoo'),
        'repeated_scale': (own + ['--scales', '1.0', '0.5', '1'], 'a scale is repeated'),
        'int8_without_train_dataset': (['--config', config_without_train_dataset(tmp_path, setup['root']),
                                        '--model_path', setup['checkpoint'], '--quantize', 'int8'],
                                       'train_dataset: missing'),
    }[case]
    if case == 'int8_without_train_dataset':
        base.remove('--dygraph')
    if case == 'unwritable':
        (tmp_path / 'file').write_text('')
        base[-1] = str(tmp_path / 'file' / 'out')
    assert cli.main(base + argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith('paddleseg benchmark: error: ') and expected in err
    if case == 'int8_without_train_dataset':  # found before the progress file is made
        assert not (tmp_path / 'out' / benchmark.PROGRESS_DIR).exists()


# ------------------------------------------------------------------------------------------- zoo entries
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path/bucket`` (a copy of the bucket's tree)."""
    bucket = tmp_path / 'bucket'
    bucket.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(bucket))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield bucket, f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()
    server.server_close()


def test_zoo_entry_checkpoint_is_fetched_through_the_mirror(setup, mirror, monkeypatch, tmp_path):
    """--zoo NAME resolves the entry's config and downloads its checkpoint (a tiny stand-in) via hub."""
    bucket, url = mirror
    published = zoo.get(ZOO_NAME)
    remote = published['checkpoint_url'].replace('https://bj.bcebos.com/', '')
    os.makedirs(os.path.dirname(bucket / remote))
    shutil.copy(setup['checkpoint'], bucket / remote)
    monkeypatch.setenv('PADDLE_PSP_MIRROR', url)
    monkeypatch.setenv('SEG_HOME', str(tmp_path / 'seg_home'))
    real_config_path = zoo.config_path
    monkeypatch.setattr(zoo, 'config_path', lambda name, root=None: setup['config'] if name == ZOO_NAME
                        else real_config_path(name, root))
    save_dir = tmp_path / 'out'
    assert benchmark_cli.main(['--zoo', ZOO_NAME, '--data_root', setup['root'], '--limit', '2', '--dygraph',
                               '--save_dir', str(save_dir)]) == 0
    results = json.loads((save_dir / benchmark.RESULTS_JSON).read_text())
    entry = results['entries'][0]
    assert entry['checkpoint']['path'].startswith(str(tmp_path / 'seg_home' / 'pretrained_model'))
    assert entry['zoo'] and entry['num_images'] == 2
    expected_published = {'miou': published['miou'], 'miou_flip': published['miou_flip'],
                          'miou_ms_flip': published['miou_ms_flip_remeasured']}
    row = (save_dir / benchmark.RESULTS_MARKDOWN).read_text().splitlines()[4]
    cells = row.strip('|').split('|')
    assert cells[:4] == ['PSPNet', 'ResNet50_OS8', '1024x512', '80000']
    for cell, column in zip(cells[4:7], benchmark.COLUMNS):
        ours = round(entry['columns'][column]['mIoU'] * 100, 2)
        delta = round(ours - expected_published[column], 2)
        assert cell == f'{ours:.2f}% ({delta:+.2f})'
        assert re.fullmatch(r'\d+\.\d\d% \([+-]\d+\.\d\d\)', cell)
        assert entry['columns'][column]['published'] == expected_published[column]
    assert row.endswith(f'[vdl]({published["vdl_url"]})|') and f'[model]({published["checkpoint_url"]})' in row


def test_zoo_selection_uses_the_real_configs_and_data_root(setup):
    targets = benchmark.zoo_targets('all', model='pspnet', dataset='cityscapes')
    assert [t.name for t in targets] == [ZOO_NAME, 'pspnet_resnet101_os8_cityscapes_1024x512_80k']
    for target in targets:
        cfg = load_config(target.config)
        drop_pretrained(cfg)
        assert cfg.dic['model']['backbone']['pretrained'] is None  # no ImageNet download to evaluate
        dataset = build_val_dataset(cfg, setup['root'])
        assert len(dataset) == NUM_VAL and dataset.num_classes == 19
    assert len(benchmark.zoo_targets('all')) == 8
    assert len(benchmark.zoo_targets(None, backbone='ResNet101_OS8')) == 4
    with pytest.raises(UserError, match='has dataset cityscapes'):
        benchmark.zoo_targets(ZOO_NAME, dataset='voc12aug')


# ----------------------------------------------------------------------------------------------- progress
class _Terminal(io.StringIO):
    def isatty(self):
        return True


class _ListHandler(logging.Handler):
    def __init__(self, records):
        super().__init__()
        self.records = records

    def emit(self, record):
        self.records.append(record.getMessage())


def test_progress_bar_on_a_terminal_and_log_lines_otherwise():
    terminal = _Terminal()
    bar = benchmark.ProgressBar('x', total=4, done=1, every=2, stream=terminal)
    bar.start -= 10  # 10 s for the first new image
    bar.update(2)
    bar.close()
    assert re.search(r'\rx \[#{12}\.{12}\] 2/4 10\.\d\d s/image ETA 00:00:2\d', terminal.getvalue())
    assert terminal.getvalue().endswith('\n')
    stream = io.StringIO()
    records = []
    handler = _ListHandler(records)
    logger.addHandler(handler)
    try:
        bar = benchmark.ProgressBar('y', total=5, done=0, every=2, stream=stream)
        for done in range(1, 6):
            bar.update(done)
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == ''
    assert [re.search(r'(\d)/5', r).group(1) for r in records] == ['2', '4', '5']
    assert all('ETA' in r for r in records)
