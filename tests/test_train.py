"""`paddleseg train`: checkpoints, exact resume after a real SIGKILL, VisualDL, data parallel, bad input."""
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest

from conftest import SUBPROCESS_ENV
from paddle_psp.engine import checkpoint as ckpt
from paddle_psp.engine import save_dir_lock
from paddle_psp.config import load_config
from paddle_psp.engine.loader import BatchCollator, EpochShardSampler, SeededSamples
from paddle_psp.core import runtime
from paddle_psp.core.errors import UserError

PADDLESEG = shutil.which('paddleseg', path=os.path.dirname(sys.executable)) or shutil.which('paddleseg')
TRAIN_WITH_HOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'train_with_hooks.py')
LOG_LINE = re.compile(r'\[TRAIN\] epoch: (\d+), iter: (\d+)/(\d+), loss: ([\d.]+), lr: ([\d.]+), '
                      r'batch_cost: ([\d.]+), reader_cost: ([\d.]+), ips: [\d.]+ samples/sec '
                      r'\| ETA \d\d:\d\d:\d\d')
TRAIN_TAGS = ['Train/loss', 'Train/loss_0', 'Train/loss_1', 'Train/lr', 'Train/batch_cost', 'Train/reader_cost']


def run_train(args, env=None, timeout=240, launcher=(), hooks=()):
    """Run ``paddleseg train ARGS`` in a fresh process; returns the CompletedProcess.

    ``hooks``: flags of tests/train_with_hooks.py (e.g. ``['--kill_after_save', '3']``), which then runs
    the training with those test-only hooks.
    """
    full_env = {**os.environ, **SUBPROCESS_ENV, **(env or {})}
    if hooks:
        command = [*(launcher or [sys.executable]), TRAIN_WITH_HOOKS, *hooks]
    else:
        command = [*launcher, PADDLESEG, 'train']
    return subprocess.run([*command, *args], capture_output=True, text=True, env=full_env, timeout=timeout)


def logged(stdout):
    """{iter: (epoch, loss text, lr)} from the [TRAIN] log lines."""
    return {int(m.group(2)): (int(m.group(1)), m.group(4), float(m.group(5))) for m in LOG_LINE.finditer(stdout)}


def losses_of(*checkpoint_dirs):
    """{iter: [total, weighted loss 0, ...]} recorded in the checkpoints' JSON."""
    merged = {}
    for path in checkpoint_dirs:
        merged.update({int(k): v for k, v in ckpt.read_info(path)['losses'].items()})
    return merged


def vdl_scalars(logdir, tag):
    """[(step, value)] of a VisualDL scalar tag, read back with visualdl's LogReader."""
    from visualdl import LogReader
    files = glob.glob(os.path.join(logdir, 'vdlrecords.*.log'))
    assert len(files) == 1, files  # resuming appends to the run's file
    reader = LogReader(file_path=files[0])
    return [(record.id, record.value) for record in reader.get_data('scalar', tag)]


def assert_same_state(a_path, b_path, keys=None, atol=1e-6, exact=False):
    """The state dicts saved at two paths agree on ``keys`` (default: all of the first): within a tolerance,
    or with ``exact`` bit for bit."""
    a, b = paddle.load(a_path), paddle.load(b_path)
    keys = keys if keys is not None else a.keys()
    assert set(keys) <= set(b)
    for key in keys:
        if exact:
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)
        else:
            np.testing.assert_allclose(np.asarray(a[key]), np.asarray(b[key]), rtol=1e-5, atol=atol, err_msg=key)


@pytest.fixture
def big_tmp_path(tmp_path):
    """tmp_path, deleted after the test: checkpoints of ResNet50 models take 250 MB each."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


# -------------------------------------------------------------------------------------- whole runs
def test_resume_after_sigkill_equals_straight_run(big_tmp_path, make_config):
    """6 iterations straight == 3 iterations, SIGKILL right after iter_3's checkpoint, resume, 3 more: bit for
    bit (weights, optimizer state, losses), on the default math threads (all physical cores), since every run
    of a fixed thread count sums in the same order."""
    config = make_config(big_tmp_path, iters=6)  # 8 images, batch 2: killed mid-epoch, resume crosses one
    common = ['--config', config, '--save_interval', '3', '--log_iters', '1', '--seed', '7']
    straight = run_train(common + ['--save_dir', str(big_tmp_path / 'straight'), '--num_workers', '0',
                                   '--keep_checkpoint_max', '2'])
    assert straight.returncode == 0, straight.stderr[-2000:]

    save_dir = str(big_tmp_path / 'run')
    killed = run_train(common + ['--save_dir', save_dir, '--num_workers', '2', '--use_vdl',
                                 '--keep_checkpoint_max', '1'], hooks=['--kill_after_save', '3'])
    assert killed.returncode == -9, killed.stderr[-2000:]  # a real SIGKILL, not an exit
    entries = sorted(set(os.listdir(save_dir)) - {save_dir_lock.LOCK_FILE, save_dir_lock.OWNER_FILE})  # killed
    assert len(entries) == 3 and entries[:2] == ['iter_3', 'train.log'] and entries[2].startswith('vdlrecords.')
    first_half = losses_of(os.path.join(save_dir, 'iter_3'))

    resume = ['--resume_model', os.path.join(save_dir, 'iter_3')]
    resumed = run_train(common + ['--save_dir', save_dir, '--num_workers', '2', '--use_vdl',
                                  '--keep_checkpoint_max', '1'] + resume)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert 'resumed from' in resumed.stderr
    assert 'bit-identical' not in resumed.stderr  # the same math threads as the checkpoint: no warning
    assert not os.path.exists(os.path.join(save_dir, 'iter_3'))  # keep_checkpoint_max 1
    with open(os.path.join(save_dir, 'train.log'), encoding='utf-8') as f:  # both runs' lines, appended
        file_lines = f.read().splitlines()
    console = (killed.stderr + resumed.stderr).splitlines()
    assert len([line for line in file_lines if "[TRAIN]" in line]) >= 2 and set(file_lines) <= set(console)

    straight_dir = str(big_tmp_path / 'straight')
    assert sorted(os.listdir(straight_dir)) == ['iter_3', 'iter_6', 'train.log']
    expected_threads = runtime.math_threads_setting(dict(os.environ, **SUBPROCESS_ENV))[0]  # the cores by default
    assert ckpt.read_info(os.path.join(straight_dir, 'iter_6'))['math_threads'] == expected_threads
    assert_same_state(os.path.join(straight_dir, 'iter_6', 'model.pdparams'),
                      os.path.join(save_dir, 'iter_6', 'model.pdparams'), exact=True)
    straight_opt = paddle.load(os.path.join(straight_dir, 'iter_6', 'model.pdopt'))
    resumed_opt = paddle.load(os.path.join(save_dir, 'iter_6', 'model.pdopt'))
    assert resumed_opt['LR_Scheduler'] == straight_opt['LR_Scheduler']
    assert resumed_opt['LR_Scheduler']['last_epoch'] == 6
    velocity = [k for k in straight_opt if k.endswith('velocity_0')]
    assert len(velocity) > 100
    for key in velocity:
        np.testing.assert_array_equal(straight_opt[key].numpy(), resumed_opt[key].numpy(), err_msg=key)

    expected = losses_of(os.path.join(straight_dir, 'iter_3'), os.path.join(straight_dir, 'iter_6'))
    got = {**first_half, **losses_of(os.path.join(save_dir, 'iter_6'))}
    assert sorted(got) == list(range(1, 7))
    assert [got[i] for i in range(1, 7)] == [expected[i] for i in range(1, 7)]
    assert len(set(round(v[0], 5) for v in got.values())) == 6  # really six different batches
    straight_log, resumed_log = logged(straight.stderr), {**logged(killed.stderr), **logged(resumed.stderr)}
    assert sorted(straight_log) == list(range(1, 7)) and resumed_log == straight_log
    assert [straight_log[i][0] for i in range(1, 7)] == [1, 1, 1, 1, 2, 2]  # epochs of 4 batches

    # VisualDL: one record file, appended to by the resumed run; values are the logged ones
    for tag in TRAIN_TAGS:
        assert [step for step, _ in vdl_scalars(save_dir, tag)] == list(range(1, 7)), tag
    vdl_loss = dict(vdl_scalars(save_dir, 'Train/loss'))
    assert all(abs(vdl_loss[i] - float(straight_log[i][1])) < 1e-4 for i in range(1, 7))
    vdl_lr = dict(vdl_scalars(save_dir, 'Train/lr'))
    poly = {i: 0.01 * (1 - (i - 1) / 6) ** 0.9 for i in range(1, 7)}  # PolynomialDecay, end_lr 0, power 0.9
    assert all(abs(vdl_lr[i] - poly[i]) < 1e-7 for i in range(1, 7))
    parts = [dict(vdl_scalars(save_dir, f'Train/loss_{j}')) for j in (0, 1)]
    assert all(abs(parts[0][i] + parts[1][i] - vdl_loss[i]) < 1e-4 for i in range(1, 7))


def test_do_eval_keeps_best_model(big_tmp_path, make_config):
    save_dir = str(big_tmp_path / 'out')
    result = run_train(['--config', make_config(big_tmp_path, iters=4), '--save_dir', save_dir,
                        '--save_interval', '2', '--log_iters', '2', '--do_eval', '--use_vdl',
                        '--keep_checkpoint_max', '5'])
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = {i: ckpt.read_info(os.path.join(save_dir, f'iter_{i}'))['metrics'] for i in (2, 4)}
    assert all(0 <= m['mIoU'] <= 1 and 0 <= m['Acc'] <= 1 for m in metrics.values())
    best_iter = max(metrics, key=lambda i: metrics[i]['mIoU'])
    best = ckpt.read_info(os.path.join(save_dir, 'best_model'))
    assert best['iter'] == best_iter and best['mIoU'] == metrics[best_iter]['mIoU']
    assert_same_state(os.path.join(save_dir, 'best_model', 'model.pdparams'),
                      os.path.join(save_dir, f'iter_{best_iter}', 'model.pdparams'), atol=0)
    for tag, key in (('Evaluate/mIoU', 'mIoU'), ('Evaluate/Acc', 'Acc')):
        scalars = vdl_scalars(save_dir, tag)
        assert [step for step, _ in scalars] == [2, 4]
        assert [value for _, value in scalars] == pytest.approx([metrics[i][key] for i in (2, 4)], abs=1e-6)


def test_data_parallel_two_cpu_ranks(big_tmp_path, make_config):
    """2 gloo processes: one shard of every epoch each, identical trained weights, rank 0 alone reports."""
    save_dir, dump_dir, log_dir = (str(big_tmp_path / name) for name in ('out', 'dump', 'log'))
    launcher = (sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', '2', '--log_dir', log_dir)
    result = run_train(['--config', make_config(big_tmp_path, iters=4, batch_size=1), '--save_dir', save_dir,
                        '--save_interval', '4', '--log_iters', '1', '--device', 'cpu'],
                       launcher=launcher, hooks=['--dump_ranks', dump_dir])
    logs = [open(os.path.join(log_dir, f'workerlog.{r}')).read() for r in (0, 1)]
    assert result.returncode == 0, logs[0][-2000:] + logs[1][-2000:]
    ranks = [json.load(open(os.path.join(dump_dir, f'rank{r}.json'))) for r in (0, 1)]
    assert [r['nranks'] for r in ranks] == [2, 2]
    shards = [[i for batch in r['batches'] for i in batch] for r in ranks]
    assert all(len(s) == 4 for s in shards)
    assert sorted(shards[0] + shards[1]) == list(range(8))  # 4 iterations x 2 ranks = one epoch, disjoint
    trained = ranks[0]['trained']
    assert trained == ranks[1]['trained'] and len(trained) > 100
    rank_files = [os.path.join(dump_dir, f'rank{r}.pdparams') for r in (0, 1)]
    assert_same_state(rank_files[0], rank_files[1], keys=trained, atol=0)
    assert_same_state(rank_files[0], os.path.join(save_dir, 'iter_4', 'model.pdparams'), atol=0)
    # the launcher's 2 ranks on this host share its cores (PADDLE_LOCAL_SIZE): never oversubscribed
    assert ckpt.read_info(os.path.join(save_dir, 'iter_4'))['math_threads'] == max(1, runtime.physical_cores() // 2)
    states = [paddle.load(f) for f in rank_files]
    statistics = [k for k in states[0] if k.endswith('_mean')]
    # plain BatchNorm on CPU: each rank's running statistics come from its own shard
    assert any(not np.array_equal(states[0][k].numpy(), states[1][k].numpy()) for k in statistics)
    assert len(logged(logs[0])) == 4 and not logged(logs[1]) and 'saved' not in logs[1]


# Bad input (flags, configs, data, save_dir) is one table in tests/test_bad_input.py.


def test_fixed_math_threads_train_bitwise_and_resuming_with_another_count_warns(big_tmp_path, make_config):
    """Two runs on 2 math threads train the same weights bit for bit. Resuming with another count warns once,
    naming the count that would continue exactly; a checkpoint from before the count was recorded does not."""
    common = ['--config', make_config(big_tmp_path, iters=2), '--seed', '3', '--num_workers', '0']
    two, one = {runtime.THREADS_VAR: '2'}, {runtime.THREADS_VAR: '1'}
    for name in ('a', 'b'):
        result = run_train(common + ['--save_dir', str(big_tmp_path / name), '--save_interval', '2'], env=two)
        assert result.returncode == 0, result.stderr[-2000:]
    a, b = (str(big_tmp_path / name / 'iter_2') for name in ('a', 'b'))
    assert ckpt.read_info(a)['math_threads'] == 2
    assert_same_state(os.path.join(a, ckpt.MODEL_FILE), os.path.join(b, ckpt.MODEL_FILE), exact=True)

    more = ['--iters', '3', '--save_interval', '3']
    warned = run_train(common + more + ['--resume_model', a, '--save_dir', str(big_tmp_path / 'a')], env=one)
    assert warned.returncode == 0, warned.stderr[-2000:]
    lines = [line for line in warned.stderr.splitlines() if 'bit-identical' in line]
    assert len(lines) == 1 and 'resuming with 1 math threads' in lines[0], lines
    assert f'{runtime.THREADS_VAR}=2' in lines[0]
    info_path = os.path.join(b, ckpt.INFO_FILE)
    info = json.load(open(info_path))
    del info['math_threads']  # as written before it was recorded
    with open(info_path, 'w') as file:
        json.dump(info, file)
    old = run_train(common + more + ['--resume_model', b, '--save_dir', str(big_tmp_path / 'b')], env=one)
    assert old.returncode == 0, old.stderr[-2000:]
    assert 'resumed from' in old.stderr and 'bit-identical' not in old.stderr


# ------------------------------------------------------------------------------------------ the parts
def test_killed_save_never_looks_complete(tmp_path):
    """SIGKILL in the middle of a save (after the weights, before checkpoint.json): no iter_N appears."""
    save_dir = str(tmp_path / 'out')
    script = ('import os, signal, json, paddle\n'
              'from paddle_psp.engine import checkpoint as ckpt\n'
              'state = {"w": paddle.ones([2])}\n'
              'ckpt.save_checkpoint(SAVE, "iter_1", state, state, {"iter": 1})\n'
              'ckpt.json.dump = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n'
              'ckpt.save_checkpoint(SAVE, "iter_2", state, state, {"iter": 2})\n')
    result = subprocess.run([sys.executable, '-c', f'SAVE = {save_dir!r}\n' + script], capture_output=True)
    assert result.returncode == -9
    entries = sorted(os.listdir(save_dir))
    assert entries[1:] == ['iter_1'] and entries[0].startswith('.tmp_iter_2_')
    leftover = os.path.join(save_dir, entries[0])
    assert {'model.pdparams', 'model.pdopt'} <= set(os.listdir(leftover))
    assert 'checkpoint.json' not in os.listdir(leftover)
    with pytest.raises(UserError, match='incomplete checkpoint'):
        ckpt.load_checkpoint(leftover)
    assert [i for i, _ in ckpt.list_checkpoints(save_dir)] == [1]
    ckpt.remove_temporaries(save_dir)
    assert os.listdir(save_dir) == ['iter_1']


def test_save_replaces_and_prunes(tmp_path):
    save_dir = str(tmp_path)
    for iteration in (1, 2, 3):
        ckpt.save_checkpoint(save_dir, f'iter_{iteration}', {'w': paddle.full([1], iteration)},
                             {'m': paddle.ones([1])}, {'iter': iteration})
    ckpt.save_checkpoint(save_dir, 'iter_3', {'w': paddle.full([1], 30)}, {'m': paddle.ones([1])},
                         {'iter': 3, 'again': True})
    model, _, info = ckpt.load_checkpoint(os.path.join(save_dir, 'iter_3'))
    assert model['w'].numpy()[0] == 30 and info['again']
    ckpt.prune_checkpoints(save_dir, 2)
    assert sorted(os.listdir(save_dir)) == ['iter_2', 'iter_3']
    os.rename(os.path.join(save_dir, 'iter_2'), os.path.join(save_dir, 'iter_5'))
    with pytest.raises(UserError, match='says iter 2 but the directory is iter_5'):
        ckpt.load_checkpoint(os.path.join(save_dir, 'iter_5'))


def test_sampler_shards_and_resumes(synthetic_root):
    dataset = list(range(10))
    for nranks in (1, 2):
        samplers = [EpochShardSampler(dataset, 2, nranks, rank, seed=3) for rank in range(nranks)]
        streams = [iter(s) for s in samplers]
        per_epoch = samplers[0].batches_per_epoch
        assert per_epoch == {1: 5, 2: 2}[nranks]  # 10 images (5 per rank), incomplete batches dropped
        epochs = []
        for _ in range(3):
            keys = [k for stream in streams for _ in range(per_epoch) for k in next(stream)]
            assert len({e for e, _ in keys}) == 1
            indices = [i for _, i in keys]
            assert len(set(indices)) == len(indices)  # no index twice within an epoch across ranks
            epochs.append(indices)
        assert epochs[0] != epochs[1]  # reshuffled each epoch
        fresh = iter(EpochShardSampler(dataset, 2, nranks, 0, seed=3))
        reference = [next(fresh) for _ in range(7)]
        resumed = iter(EpochShardSampler(dataset, 2, nranks, 0, seed=3, start_batch=3))
        assert [next(resumed) for _ in range(4)] == reference[3:]


def test_seeded_samples_repeat_augmentation(make_config, tmp_path):
    dataset = load_config(make_config(tmp_path)).train_dataset
    samples = SeededSamples(dataset, seed=5)
    first = samples[(0, 3)]
    np.random.seed(123)  # whatever happened to the global generators meanwhile
    again = samples[(0, 3)]
    assert first[3] == '' and first[0].shape == (3, 64, 64)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], samples[(1, 3)][0])  # another epoch, another crop / flip / distortion


def test_collator_checks_labels_per_batch():
    files = [('a.png', 'a_label.png'), ('b.png', 'b_label.png')]
    collate = BatchCollator(files, num_classes=3, ignore_index=255)
    image = np.zeros((3, 4, 4), 'float32')
    good = np.array([[0, 1, 2, 255]] * 4, 'uint8')
    images, labels, indices, failure = collate([(image, good, 0, ''), (image, good, 1, '')])
    assert images.shape == (2, 3, 4, 4) and labels.dtype == np.int64 and failure.tolist() == [0]
    bad = good.copy()
    bad[0, 0] = 7
    *_, failure = collate([(image, good, 0, ''), (image, bad, 1, '')])
    assert bytes(failure).decode() == ('b_label.png: label values [7] outside [0, 3) and not the ignore index '
                                       '255; expected class ids')
    *_, failure = collate([(None, None, 0, 'a.png: unreadable image'), (image, good, 1, '')])
    assert bytes(failure).decode() == 'a.png: unreadable image'


def test_optimizer_state_follows_parameters_whatever_their_internal_names():
    """Paddle keys optimizer state by internal names (linear_3.w_0) that depend on what the process built
    before; resume matches them through the structured names."""
    def build():
        layer = paddle.nn.Sequential(paddle.nn.Linear(3, 4), paddle.nn.Linear(4, 2))
        return layer, paddle.optimizer.Momentum(0.1, momentum=0.9, parameters=layer.parameters())

    def step(layer, optimizer):
        layer(paddle.ones([2, 3])).sum().backward()
        optimizer.step()
        optimizer.clear_grad()

    first, first_opt = build()
    step(first, first_opt)
    saved_weights = {k: v.numpy().copy() for k, v in first.state_dict().items()}
    saved_state = {k: paddle.to_tensor(v.numpy()) for k, v in first_opt.state_dict().items()}  # a copy
    saved_names = ckpt.parameter_names(first)
    step(first, first_opt)  # the run that never stopped
    second, second_opt = build()
    current_names = ckpt.parameter_names(second)
    assert saved_names.keys() == current_names.keys() and saved_names != current_names
    second.set_state_dict(saved_weights)
    second_opt.set_state_dict(ckpt.remap_optimizer_state(saved_state, saved_names, current_names))
    step(second, second_opt)
    for key, value in second.state_dict().items():
        np.testing.assert_array_equal(first.state_dict()[key].numpy(), value.numpy())
    third, third_opt = build()  # without the renaming, Paddle cannot even take a step
    third_opt.set_state_dict(saved_state)
    with pytest.raises(AssertionError, match='should in state dict'):
        step(third, third_opt)
