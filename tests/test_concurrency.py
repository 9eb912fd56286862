"""Concurrent processes never corrupt shared state, proved with real ``paddleseg`` processes: two trainings into
one ``--save_dir`` (one trains, the other is refused naming the live one; a ``kill -9``'d run's lock does not
block the next), two ``predict`` runs on a cold export cache (one entry, valid), two downloads of one URL (one
complete file).
"""
import glob
import os
import signal
import subprocess
import sys
import time

import paddle
import pytest

from conftest import SUBPROCESS_ENV
from paddle_psp.config import load_config
from paddle_psp.engine import checkpoint as ckpt
from paddle_psp.engine import save_dir_lock
from paddle_psp.inference import cache
from tests.test_hub import send, server  # noqa: F401 (server: a fixture)
from tests.test_train import PADDLESEG, TRAIN_WITH_HOOKS

TRAIN = ['--iters', '4', '--save_interval', '2', '--log_iters', '1', '--seed', '3']


def start(command, env, log):
    """A ``paddleseg`` process writing its stderr to file ``log``."""
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(log, 'w'),
                            env={**os.environ, **SUBPROCESS_ENV, **env})


def last_line(log):
    return open(log).read().strip().splitlines()[-1]


def wait_for(condition, process, seconds=240):
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, 'the process ended early'
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.2)


def assert_one_run(save_dir, iterations):
    """The checkpoints of ``save_dir`` are ``iterations``, complete, loadable and of one run."""
    found = ckpt.list_checkpoints(str(save_dir))
    assert [i for i, _ in found] == iterations
    assert len({ckpt.run_of(path) for _, path in found}) == 1
    for _, path in found:
        ckpt.ResumeState.load(path)


def test_a_second_train_is_refused_while_the_first_runs_and_a_killed_run_is_taken_over(tmp_path, make_config):
    config, save_dir = make_config(tmp_path, iters=4), tmp_path / 'out'
    flags = ['--config', config, '--save_dir', str(save_dir), '--resume_model', 'auto', *TRAIN]
    first = start([sys.executable, TRAIN_WITH_HOOKS, '--pause_after_save', '2', *flags], {}, tmp_path / 'a.log')
    try:
        wait_for(lambda: 'paused after iter 2' in open(tmp_path / 'a.log').read(), first)
        second = subprocess.run([PADDLESEG, 'train', *flags], capture_output=True, text=True, timeout=240,
                                env={**os.environ, **SUBPROCESS_ENV})
        line = second.stderr.strip().splitlines()[-1]
        assert second.returncode == 2 and line.startswith(
            f'paddleseg train: error: --save_dir {save_dir}: another paddleseg train is writing there '
            f'(pid {first.pid} on host '), second.stderr[-2000:]
        assert_one_run(save_dir, [2])
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert os.path.isfile(save_dir / save_dir_lock.OWNER_FILE)  # left behind by the killed run
    third = subprocess.run([PADDLESEG, 'train', *flags], capture_output=True, text=True, timeout=240,
                           env={**os.environ, **SUBPROCESS_ENV})
    assert third.returncode == 0, third.stderr[-2000:]
    assert f'pid {first.pid}' in third.stderr and 'taking over' in third.stderr
    assert_one_run(save_dir, [2, 4])
    assert not {save_dir_lock.OWNER_FILE, save_dir_lock.LOCK_FILE} & set(os.listdir(save_dir))  # gone with the run


def test_two_trains_started_at_once_one_trains_one_is_refused(tmp_path, make_config):
    config, save_dir = make_config(tmp_path, iters=4), tmp_path / 'out'
    flags = ['--config', config, '--save_dir', str(save_dir), '--resume_model', 'auto', *TRAIN]
    runs = [start([PADDLESEG, 'train', *flags], {}, tmp_path / f'{n}.log') for n in 'ab']
    codes = [run.wait(timeout=300) for run in runs]
    assert sorted(codes) == [0, 2], [open(tmp_path / f'{n}.log').read()[-2000:] for n in 'ab']
    refused = last_line(tmp_path / f'{"ab"[codes.index(2)]}.log')
    # refused by the lock, or (the other run done first) by the changed folder: one line naming it either way
    assert refused.startswith('paddleseg train: error: ') and str(save_dir) in refused, refused
    assert_one_run(save_dir, [2, 4])


def test_two_predicts_on_a_cold_export_cache_make_one_valid_entry(tmp_path, make_config, synthetic_root):
    config = make_config(tmp_path)
    weights = str(tmp_path / 'w.pdparams')
    paddle.seed(0)
    paddle.save(load_config(config).model.state_dict(), weights)
    image = sorted(glob.glob(os.path.join(synthetic_root, 'leftImg8bit', 'val', '*', '*.png')))[0]
    env = {cache.CACHE_VAR: str(tmp_path / 'cache')}
    runs = [start([PADDLESEG, 'predict', '--config', config, '--model_path', weights, '--image_path', image,
                   '--save_dir', str(tmp_path / f'pred_{n}')], env, tmp_path / f'{n}.log') for n in 'ab']
    assert [run.wait(timeout=400) for run in runs] == [0, 0], [open(tmp_path / f'{n}.log').read()[-2000:] for n in 'ab']
    entries = [name for name in os.listdir(tmp_path / 'cache') if not name.startswith('.')]
    assert len(entries) == 1 and cache.is_valid(str(tmp_path / 'cache' / entries[0]))
    outputs = [sorted(glob.glob(str(tmp_path / f'pred_{n}' / '**' / '*.png'), recursive=True)) for n in 'ab']
    assert outputs[0] and [open(p, 'rb').read() for p in outputs[0]] == [open(p, 'rb').read() for p in outputs[1]]


def test_two_downloads_of_one_url_make_one_complete_file(tmp_path, server):
    weights = tmp_path / 'model.pdparams'
    paddle.save({'conv.weight': paddle.rand([256, 256])}, str(weights))
    body = weights.read_bytes()
    path = '/paddleseg/dygraph/shared/model.pdparams'
    server.routes[path] = lambda handler, calls: send(handler, body, pause=1.0)
    env = {'SEG_HOME': str(tmp_path / 'home')}
    runs = [subprocess.Popen([PADDLESEG, 'download', server.url(path)], stdout=subprocess.PIPE, text=True,
                             stderr=subprocess.DEVNULL, env={**os.environ, **env}) for _ in range(2)]
    outputs = [run.communicate(timeout=120)[0].strip() for run in runs]
    expected = str(tmp_path / 'home' / 'pretrained_model' / 'shared' / 'model.pdparams')
    assert [run.returncode for run in runs] == [0, 0] and outputs == [expected, expected]
    assert open(expected, 'rb').read() == body and len(server.hits(path)) == 1
    assert not glob.glob(str(tmp_path / 'home' / '**' / '*.part'), recursive=True)
