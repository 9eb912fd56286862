"""Test helper: ``paddleseg train`` with test-only hooks, run as a subprocess (directly or by
``paddle.distributed.launch``)::

    python tests/train_with_hooks.py [--kill_after_save N] [--dump_ranks DIR] TRAIN_FLAGS...

``--kill_after_save N``: rank 0 SIGKILLs itself right after the checkpoint of iteration N is complete.
``--dump_ranks DIR``: every rank writes its final state dict (``rank{R}.pdparams``), the names of its
trained parameters and the sample indices of each batch it trained on (``rank{R}.json``) into DIR.
"""
import argparse
import json
import os
import signal
import sys

import paddle

from paddle_psp.core import runtime
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
    parser.add_argument('--dump_ranks')
    hook_args, train_argv = parser.parse_known_args(argv)
    hooks = []
    if hook_args.kill_after_save is not None:
        hooks.append(KillAfterSave(hook_args.kill_after_save))
    if hook_args.dump_ranks:
        hooks.append(DumpRanks(hook_args.dump_ranks))
    runtime.apply_cpu_tuning()  # as `paddleseg train` does, so that the numbers match its runs
    try:
        return train.main(train_argv, extra_hooks=hooks)
    except UserError as err:
        print(f'paddleseg train: error: {err}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
