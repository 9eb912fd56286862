"""Training runs never lose or mix work: kill -9 anywhere, `--resume_model auto`, per-run pruning and
best_model, a full disk, and VisualDL curves read back with VisualDL's own reader."""
import errno
import glob
import os
import shutil

import numpy as np
import paddle
import pytest

import paddle_psp_cli as cli
from paddle_psp.core.errors import UserError
from paddle_psp.engine import checkpoint as ckpt
from paddle_psp.engine import vdl
from paddle_psp.engine.train import check_save_dir
from test_train import assert_same_state, big_tmp_path, losses_of, run_train  # noqa: F401 (fixture)

# Each run of the chain is killed somewhere, then `--resume_model auto` (the same command again) goes on.
KILLS = ['forward:1', 'best:2', 'eval:4', 'save:4']


def records(logdir, tag):
    """[(step, value)] of ``tag`` in the record file VisualDL shows for ``logdir`` (its newest by name)."""
    from visualdl import LogReader
    reader = LogReader(logdir=logdir)
    name = reader.logs(update=True)[logdir]
    return [(r.id, r.value) for r in LogReader(file_path=os.path.join(logdir, name)).get_data('scalar', tag)]


def assert_nothing_looks_complete_that_is_not(save_dir):
    """Every visible checkpoint directory is complete and loadable; partial ones are hidden ``.tmp_*``."""
    for entry in os.listdir(save_dir) if os.path.isdir(save_dir) else []:
        path = os.path.join(save_dir, entry)
        if os.path.isdir(path) and not entry.startswith(ckpt.TEMP_PREFIX):
            ckpt.load_checkpoint(path, need_optimizer=entry != ckpt.BEST_DIR)


def test_kill_anywhere_then_auto_resume_equals_straight_run(big_tmp_path, make_config):
    config = make_config(big_tmp_path, iters=4)
    common = ['--config', config, '--save_interval', '2', '--log_iters', '1', '--seed', '3', '--do_eval',
              '--use_vdl', '--keep_checkpoint_max', '1']
    straight_dir, save_dir = str(big_tmp_path / 'straight'), str(big_tmp_path / 'run')
    straight = run_train(common + ['--save_dir', straight_dir])
    assert straight.returncode == 0, straight.stderr[-2000:]
    for kill in KILLS:
        killed = run_train(common + ['--save_dir', save_dir, '--resume_model', 'auto'], hooks=['--kill_at', kill])
        assert killed.returncode == -9, (kill, killed.stderr[-2000:])
        assert_nothing_looks_complete_that_is_not(save_dir)
    resumed = run_train(common + ['--save_dir', save_dir, '--resume_model', 'auto'])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert 'resuming from' in resumed.stderr

    assert sorted(e for e in os.listdir(save_dir) if not e.startswith('vdlrecords')) == ['best_model', 'iter_4',
                                                                                       'train.log']
    assert_same_state(os.path.join(straight_dir, 'iter_4', 'model.pdparams'),
                      os.path.join(save_dir, 'iter_4', 'model.pdparams'))
    best, straight_best = (ckpt.read_info(os.path.join(d, 'best_model')) for d in (save_dir, straight_dir))
    assert (best['iter'], best['mIoU']) == pytest.approx((straight_best['iter'], straight_best['mIoU']))
    assert_same_state(os.path.join(straight_dir, 'best_model', 'model.pdparams'),
                      os.path.join(save_dir, 'best_model', 'model.pdparams'))
    np.testing.assert_allclose(*(list(losses_of(os.path.join(d, 'iter_4')).values()) for d in (straight_dir, save_dir)),
                               rtol=1e-5)
    for tag, steps in (('Train/loss', [1, 2, 3, 4]), ('Evaluate/mIoU', [2, 4])):
        got, expected = records(save_dir, tag), records(straight_dir, tag)
        assert [step for step, _ in got] == steps, tag  # no duplicate, no backward step
        np.testing.assert_allclose([v for _, v in got], [v for _, v in expected], rtol=1e-4, err_msg=tag)


def test_disk_full_during_a_save_keeps_the_previous_checkpoint(tmp_path, make_config, monkeypatch, capsys):
    save_dir = tmp_path / 'out'
    write_state = ckpt.write_state

    def full_at_second_save(state, path):
        if 'iter_2' in path:
            with open(path, 'wb') as file:
                file.write(b'half')
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write_state(state, path)
    monkeypatch.setattr(ckpt, 'write_state', full_at_second_save)
    capsys.readouterr()
    status = cli.main(['train', '--config', make_config(tmp_path, iters=2), '--save_dir', str(save_dir),
                       '--save_interval', '1'])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err[-1] == (f'paddleseg train: error: {save_dir}/iter_2: cannot write (No space left on device); '
                       'expected free space on its disk (free some, or write to another disk)')
    assert [entry for entry in os.listdir(save_dir) if entry != 'train.log'] == ['iter_1']
    ckpt.load_checkpoint(str(save_dir / 'iter_1'))


def test_pruning_and_best_model_belong_to_their_run(tmp_path):
    save_dir = str(tmp_path)
    for run_id, iters in (('old', (7, 8)), ('new', (1, 2, 3))):
        for i in iters:
            ckpt.save_checkpoint(save_dir, f'iter_{i}', {'w': paddle.full([1], i)}, {}, {'iter': i, 'run_id': run_id})
    ckpt.prune_checkpoints(save_dir, 1, 'new')
    assert sorted(os.listdir(save_dir)) == ['iter_3', 'iter_7', 'iter_8']
    assert ckpt.other_runs(save_dir, 'new') == ['iter_7', 'iter_8']
    assert ckpt.other_runs(save_dir) == ['iter_3', 'iter_7', 'iter_8']
    ckpt.save_checkpoint(save_dir, ckpt.BEST_DIR, {}, None, {'iter': 8, 'run_id': 'old', 'mIoU': 0.5})
    assert ckpt.read_best(save_dir, 'new') == {} and ckpt.read_best(save_dir, 'old')['mIoU'] == 0.5
    with pytest.raises(UserError, match='holds checkpoints of another run'):
        check_save_dir(save_dir, os.path.join(save_dir, 'iter_3'))
    with pytest.raises(UserError, match=r'another run \(iter_3\)'):
        check_save_dir(save_dir, 'auto')  # the newest is run 'old''s: iter_3 is another run's
    shutil.rmtree(os.path.join(save_dir, 'iter_3'))
    assert check_save_dir(save_dir, 'auto') == os.path.join(save_dir, 'iter_8')  # the newest complete one
    assert check_save_dir(str(tmp_path / 'empty'), 'auto') is None


def test_visualdl_fresh_file_per_run_and_resume_truncates(tmp_path):
    from visualdl import LogReader
    logdir = str(tmp_path)
    first = vdl.ScalarWriter(logdir, 'vdlrecords.0000000001.aaa.log')
    for step in range(1, 6):
        first.add_scalars({'Train/loss': step / 10}, step)
    first.close()
    path = os.path.join(logdir, first.file_name)
    with open(path, 'ab') as file:
        file.write(b'\x40\x00\x00\x00\x00\x00\x00\x00torn')  # a record cut short by a kill
    vdl.truncate_records(path, 3)
    resumed = vdl.ScalarWriter(logdir, first.file_name)
    for step in (4, 5):
        resumed.add_scalars({'Train/loss': step}, step)
    resumed.close()
    scalars = LogReader(file_path=path).get_data('scalar', 'Train/loss')
    assert [(r.id, round(r.value, 3)) for r in scalars] == [(1, 0.1), (2, 0.2), (3, 0.3), (4, 4), (5, 5)]
    fresh = vdl.new_record_name('bbb')
    assert fresh > first.file_name and fresh != first.file_name
    assert glob.glob(os.path.join(logdir, 'vdlrecords.*.log')) == [path]
