"""Data parallel beyond one machine: two launchers on 127.0.0.1 stand in for two hosts (gloo on CPU).

Two nodes x one process must train exactly what one node x two processes trains: the second host changes
nothing. One process with the total batch sees the same images per iteration but does not train the same
weights (see :func:`test_two_nodes_equal_one_node_two_processes`); the difference is printed, not asserted.
"""
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest

from conftest import SUBPROCESS_ENV
from paddle_psp.config import load_config

# `paddleseg train` with a test-only hook that writes each rank's final state (see that file)
TRAIN_WITH_HOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'train_with_hooks.py')
ITERS = 2
BATCH = 2  # per rank: 2 ranks x 2 images x 2 iterations = one epoch of the 8 images
TIMEOUT = 300  # seconds for all processes of one run together


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def run_together(commands, directory, env):
    """Start ``commands`` at once, each in its own process group; wait for all within TIMEOUT.

    On a timeout (or any error) every group is killed, so no launcher or worker outlives the test.
    Returns ``[(returncode, output text)]``.
    """
    logs = [os.path.join(directory, f'launcher{i}.txt') for i in range(len(commands))]
    procs = []
    try:
        for command, log in zip(commands, logs):
            with open(log, 'w') as out:
                procs.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                              start_new_session=True))
        deadline = time.monotonic() + TIMEOUT
        for proc in procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return [(proc.returncode, open(log).read()) for proc, log in zip(procs, logs)]


def train(directory, config, nodes=1, nproc=1, batch_size=BATCH):
    """``paddleseg train`` on ``nodes`` launchers of ``nproc`` processes each (one plain process when both
    are 1); returns the directory of the ranks' final states (``--dump_ranks``)."""
    os.makedirs(directory)
    dump = os.path.join(directory, 'dump')
    # One math thread per process, whatever the layout: two launchers on one host cannot see each other
    # (each would take all cores), and bit-equal weights need the same count (summation order) everywhere.
    env = {**os.environ, **SUBPROCESS_ENV, 'FLAGS_paddle_num_threads': '1'}
    master = f'127.0.0.1:{free_port()}'
    commands = []
    for node in range(nodes):
        launcher = [sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', str(nproc),
                    '--max_restart', '0', '--log_dir', os.path.join(directory, f'log{node}')]
        if nodes > 1:
            launcher += ['--nnodes', str(nodes), '--master', master, '--rank', str(node)]
        commands.append((launcher if nodes * nproc > 1 else [sys.executable]) + [
            TRAIN_WITH_HOOKS, '--dump_ranks', dump, '--config', config,
            '--save_dir', os.path.join(directory, f'out{node}'),
            '--batch_size', str(batch_size), '--iters', str(ITERS), '--save_interval', str(ITERS),
            '--device', 'cpu', '--seed', '0'])
    results = run_together(commands, directory, env)
    for node, (code, output) in enumerate(results):
        workers = sorted(glob.glob(os.path.join(directory, f'log{node}', 'workerlog.*')))
        details = ''.join(open(worker).read()[-1500:] for worker in workers)
        assert code == 0, f'node {node}: exit {code}\n{output[-1500:]}\n{details}'
    return dump


def rank_state(dump, rank):
    """(state dict as numpy arrays, the rank's JSON record) of one rank."""
    state = {k: np.asarray(v) for k, v in paddle.load(os.path.join(dump, f'rank{rank}.pdparams')).items()}
    return state, json.load(open(os.path.join(dump, f'rank{rank}.json')))


def max_abs_difference(a, b, keys):
    return max(float(np.abs(a[k] - b[k]).max()) for k in keys)


@pytest.fixture
def big_tmp_path(tmp_path):
    """tmp_path, deleted after the test: checkpoints of ResNet50 models take 250 MB each."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_two_nodes_equal_one_node_two_processes(big_tmp_path, make_config):
    """2 nodes x 1 process == 1 node x 2 processes, bit for bit, BatchNorm statistics included.

    ONE process with the total batch (4 instead of 2 x 2) trains on the same images per iteration, but its
    weights differ, for reasons of the method rather than the transport: without SyncBatchNorm (CPU) each
    rank normalizes with its own shard's batch statistics, and from a random initialization these
    differences grow through the 50 layers until the updates differ about as much as they are large; also
    the loss is a mean over each rank's valid pixels before the gradients are averaged over ranks, and
    dropout masks are drawn per rank. So no tolerance is asserted there; the difference is printed.
    """
    config = make_config(big_tmp_path, iters=ITERS, batch_size=BATCH)
    started = time.monotonic()
    multi_node = train(str(big_tmp_path / 'nodes2'), config, nodes=2, nproc=1)
    one_node = train(str(big_tmp_path / 'nodes1'), config, nodes=1, nproc=2)
    one_process = train(str(big_tmp_path / 'single'), config, batch_size=2 * BATCH)
    print(f'\nthree trainings: {time.monotonic() - started:.1f} s')

    ranks = {name: [rank_state(dump, r) for r in range(n)]
             for name, dump, n in (('multi', multi_node, 2), ('one_node', one_node, 2), ('single', one_process, 1))}
    trained = ranks['multi'][0][1]['trained']
    assert len(trained) > 100
    assert [r[1]['nranks'] for r in ranks['multi']] == [2, 2]
    for r in (0, 1):
        multi_state, multi_info = ranks['multi'][r]
        node_state, node_info = ranks['one_node'][r]
        assert multi_info['batches'] == node_info['batches']  # the same shard per global rank
        assert set(multi_state) == set(node_state)
        for key in multi_state:  # every parameter and this rank's BatchNorm statistics
            np.testing.assert_array_equal(multi_state[key], node_state[key], err_msg=f'rank {r}: {key}')
    multi = ranks['multi'][0][0]
    assert max_abs_difference(multi, ranks['multi'][1][0], trained) == 0.0
    assert not os.path.exists(str(big_tmp_path / 'nodes2' / 'out1'))  # the second host writes nothing
    assert os.path.isfile(str(big_tmp_path / 'nodes2' / 'out0' / f'iter_{ITERS}' / 'model.pdparams'))

    # One process, batch 4: the same 4 images per iteration as the two ranks together.
    single, single_info = ranks['single'][0]
    pairs = zip(*(r[1]['batches'] for r in ranks['multi']))
    assert [sorted(a + b) for a, b in pairs] == [sorted(b) for b in single_info['batches']]
    paddle.set_device('cpu')
    paddle.seed(0)  # the trainer's initial weights (--seed 0)
    initial = {k: np.asarray(v) for k, v in load_config(config).model.state_dict().items()}
    moved = max_abs_difference(single, initial, trained)
    apart = max_abs_difference(multi, single, trained)
    print(f'max |w| difference: 2 nodes vs 1 node x 2 processes 0.0; vs 1 process with batch {2 * BATCH} '
          f'{apart:.3g} (training moved the weights by up to {moved:.3g})')
