"""Test helper: ``paddleseg train`` with test-only hooks, run as a subprocess (directly or by
``paddle.distributed.launch``)::

    python tests/train_with_hooks.py [--kill_after_save N] [--kill_at WHERE:N] [--dump_ranks DIR] TRAIN_FLAGS...

``--kill_after_save N``: rank 0 SIGKILLs itself right after the checkpoint of iteration N is complete.
``--kill_at WHERE:N``: rank 0 SIGKILLs itself in the middle of iteration N's ``forward`` (training), ``eval``
(the evaluation inside training), ``save`` (writing ``iter_N``, its weights written) or ``best`` (writing
``best_model`` at iteration N, its weights written).
``--pause_after_save N``: rank 0 sleeps (for an hour, or until killed) right after the checkpoint of iteration N is
complete: a long job that still holds its ``--save_dir``.
``--dump_ranks DIR``: every rank writes its final state dict (``rank{R}.pdparams``), the names of its
trained parameters and the sample indices of each batch it trained on (``rank{R}.json``) into DIR.
"""
import argparse
import json
import os
import signal
import sys
import time

import paddle

from paddle_psp.core import runtime
from paddle_psp.engine import checkpoint as ckpt
from paddle_psp.engine import train
from paddle_psp.engine.hooks import Hook
from paddle_psp.core.errors import UserError


class KillAfterSave(Hook):
    """SIGKILL (a real crash: no cleanup, no exit code) after iteration ``iteration`` and its checkpoint."""

    def __init__(self, iteration):
        self.iteration = iteration

    def after_step(self, trainer, step):
        if step.iteration == self.iteration and trainer.rank == 0:
            os.kill(os.getpid(), signal.SIGKILL)


class PauseAfterSave(Hook):
    """Sleep after iteration ``iteration`` and its checkpoint: the run goes on holding its folder."""

    def __init__(self, iteration):
        self.iteration = iteration

    def after_step(self, trainer, step):
        if step.iteration == self.iteration and trainer.rank == 0:
            print(f'paused after iter {step.iteration}', file=sys.stderr, flush=True)
            time.sleep(3600)


class KillAt(Hook):
    """SIGKILL in the middle of something iteration ``iteration`` does (see the module's docstring)."""

    def __init__(self, where, iteration):
        self.where = where
        self.iteration = iteration
        self.done = 0  # iterations finished (this hook runs after the standard ones)

    def before_train(self, trainer):
        self.done = trainer.start_iter
        if trainer.rank != 0:
            return
        if self.where in ('forward', 'eval'):
            model, forward = trainer.core_model, trainer.core_model.forward

            def forward_then_maybe_die(*args, **kwargs):
                out = forward(*args, **kwargs)
                if self.done + 1 == self.iteration and model.training == (self.where == 'forward'):
                    os.kill(os.getpid(), signal.SIGKILL)
                return out
            model.forward = forward_then_maybe_die
        else:
            write_state, prefix = ckpt.write_state, ckpt.TEMP_PREFIX + (
                f'iter_{self.iteration}_' if self.where == 'save' else ckpt.BEST_DIR + '_')

            def write_then_maybe_die(state, path):
                write_state(state, path)
                if self.done + 1 == self.iteration and os.path.basename(os.path.dirname(path)).startswith(prefix):
                    os.kill(os.getpid(), signal.SIGKILL)
            ckpt.write_state = write_then_maybe_die

    def after_step(self, trainer, step):
        self.done = step.iteration


class DumpRanks(Hook):
    """Write this rank's final weights and the batches it saw into ``directory``, to compare replicas.

    BatchNorm statistics stay per rank without SyncBatchNorm, so the JSON names the trained parameters.
    """

    def __init__(self, directory):
        self.directory = directory
        self.batches = []

    def after_step(self, trainer, step):
        self.batches.append(step.indices)

    def after_train(self, trainer):
        os.makedirs(self.directory, exist_ok=True)
        model, rank = trainer.core_model, trainer.rank
        paddle.save(model.state_dict(), os.path.join(self.directory, f'rank{rank}.pdparams'))
        trained = [name for name, p in model.named_parameters() if not p.stop_gradient]
        with open(os.path.join(self.directory, f'rank{rank}.json'), 'w') as file:
            json.dump({'rank': rank, 'nranks': trainer.nranks, 'trained': trained, 'batches': self.batches}, file)


def main(argv):
    """Parse the hook flags, pass the rest to ``paddleseg train``; returns the exit status as the CLI does."""
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument('--kill_after_save', type=int)
    parser.add_argument('--kill_at', metavar='WHERE:N')
    parser.add_argument('--pause_after_save', type=int)
    parser.add_argument('--dump_ranks')
    hook_args, train_argv = parser.parse_known_args(argv)
    hooks = []
    if hook_args.kill_at:
        where, iteration = hook_args.kill_at.split(':')
        hooks.append(KillAt(where, int(iteration)))
    if hook_args.kill_after_save is not None:
        hooks.append(KillAfterSave(hook_args.kill_after_save))
    if hook_args.pause_after_save is not None:
        hooks.append(PauseAfterSave(hook_args.pause_after_save))
    if hook_args.dump_ranks:
        hooks.append(DumpRanks(hook_args.dump_ranks))
    runtime.apply_cpu_tuning(training=True)  # as `paddleseg train` does, so that the numbers match its runs
    try:
        return train.main(train_argv, extra_hooks=hooks)
    except UserError as err:
        print(f'paddleseg train: error: {err}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
