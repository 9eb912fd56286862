"""What happens around the training loop: logging, evaluation, checkpoints, VisualDL, as hooks.

The loop (:class:`paddle_psp.engine.train.Trainer`) calls every hook in order: ``before_train`` once,
``after_step`` after each iteration with a :class:`Step`, ``after_train`` once at the end. Order matters:
:class:`EvalHook` puts its metrics into the step before :class:`CheckpointHook` saves them, and
:class:`VisualDLHook` writes (and at a checkpoint iteration flushes) the scalars the hooks before it put
into the step before the checkpoint is saved. Extra hooks (e.g. a test's
fault injection) come after these, so they see the checkpoint of the step complete.

Hooks own their state. A hook that must survive a resume returns ``{file name: state dict}`` from
:meth:`Hook.checkpoint_state`; :class:`CheckpointHook` writes these files into every ``iter_N`` with the
model and optimizer (in the same atomic step), and on resume the hook reads its own back in ``before_train``
with ``trainer.resume.state_file(name)`` (None when the checkpoint has no such file: an older run, or
PaddleSeg's ``iter_N``). The EMA (:mod:`paddle_psp.engine.ema`) works this way: ``ema_model.pdparams``.
"""
import dataclasses
import os

from paddle_psp.core.log import logger
from paddle_psp.core.console import format_duration
from paddle_psp.engine import checkpoint as ckpt
from paddle_psp.evaluation.evaluate import evaluate
from paddle_psp.engine.vdl import ScalarWriter, truncate_records


@dataclasses.dataclass
class Step:
    """One finished training iteration, as hooks see it.

    Attributes:
        iteration (int): 1-based number of the iteration just done.
        lr (float): The learning rate it used.
        losses (list[float]): [total, weighted loss 0, weighted loss 1, ...].
        indices (list[int]): The dataset indices of its batch on this rank.
        reader_cost (float): Seconds spent waiting for the batch.
        batch_cost (float): Seconds of the whole iteration.
        scalars (dict): VisualDL ``{tag: value}`` that hooks add for :class:`VisualDLHook`.
        metrics (dict): Evaluation results of this iteration (from :class:`EvalHook`), else empty.
    """

    iteration: int
    lr: float
    losses: list
    indices: list
    reader_cost: float
    batch_cost: float
    scalars: dict = dataclasses.field(default_factory=dict)
    metrics: dict = dataclasses.field(default_factory=dict)


class Hook:
    """Base class: a hook overrides what it needs; ``trainer`` is the running Trainer."""

    def before_train(self, trainer):
        """Called once, before the first iteration."""

    def after_step(self, trainer, step):
        """Called after every iteration with its :class:`Step`."""

    def after_train(self, trainer):
        """Called once, after the last iteration."""

    def checkpoint_state(self, trainer):
        """``{file name: state dict}`` this hook adds to every ``iter_N`` (a ``.pdparams`` name other than
        ``model.pdparams``); read back on resume with ``trainer.resume.state_file(name)``. Default: none."""
        return {}


def due(iteration, interval, iters):
    """Whether a periodic action runs at ``iteration``: every ``interval`` iterations and at the last one."""
    return iteration % interval == 0 or iteration == iters


class LogHook(Hook):
    """A PaddleSeg-style ``[TRAIN]`` line every ``interval`` iterations (averages since the previous line),
    on rank 0, and the ``Train/*`` scalars on every rank.

    Args:
        interval (int): Iterations between log lines.
    """

    def __init__(self, interval):
        self.interval = interval
        self.window = Window()

    def after_step(self, trainer, step):
        self.window.add(step.losses, step.reader_cost, step.batch_cost)
        if not due(step.iteration, self.interval, trainer.iters):
            return
        losses, reader_cost, batch_cost = self.window.averages()
        self.window.reset()
        epoch = (step.iteration - 1) // trainer.batches_per_epoch + 1
        eta = format_duration((trainer.iters - step.iteration) * batch_cost)
        ips = trainer.batch_size * trainer.nranks / max(batch_cost, 1e-9)
        if trainer.rank == 0:
            logger.info(f'[TRAIN] epoch: {epoch}, iter: {step.iteration}/{trainer.iters}, loss: {losses[0]:.4f}, '
                        f'lr: {step.lr:.6f}, batch_cost: {batch_cost:.4f}, reader_cost: {reader_cost:.5f}, '
                        f'ips: {ips:.4f} samples/sec | ETA {eta}')
        step.scalars.update({'Train/loss': losses[0], 'Train/lr': step.lr, 'Train/batch_cost': batch_cost,
                             'Train/reader_cost': reader_cost})
        if len(losses) > 2:
            step.scalars.update({f'Train/loss_{i}': value for i, value in enumerate(losses[1:])})


class EvalHook(Hook):
    """mIoU and Acc on the validation set every ``interval`` iterations (``--do_eval``); every rank scores
    its share and the counts are summed.

    Args:
        dataset (paddle.io.Dataset): The validation dataset.
        interval (int): Iterations between evaluations (the checkpoint interval).
        num_workers (int, optional): Processes reading images. Default: 0.
    """

    def __init__(self, dataset, interval, num_workers=0):
        self.dataset = dataset
        self.interval = interval
        self.num_workers = num_workers

    def after_step(self, trainer, step):
        if not due(step.iteration, self.interval, trainer.iters):
            return
        scores = evaluate(trainer.as_nchw(trainer.core_model), self.dataset, num_workers=self.num_workers,
                          print_detail=trainer.rank == 0)
        step.metrics = {key: float(scores[key]) for key in ('mIoU', 'Acc', 'Kappa', 'Dice') if key in scores}
        logger.info(f'[EVAL] iter {step.iteration}: '
                    + ', '.join(f'{k}: {v:.4f}' for k, v in step.metrics.items()))
        step.scalars.update({'Evaluate/mIoU': step.metrics['mIoU'], 'Evaluate/Acc': step.metrics['Acc']})


class CheckpointHook(Hook):
    """On rank 0, every ``interval`` iterations: ``iter_N`` (weights, optimizer state, the losses since the
    previous save, the best so far), then ``best_model/`` when the step's mIoU improved, then pruning of
    this run's oldest ``iter_N``.

    Saving ``iter_N`` before ``best_model`` makes a kill between the two harmless: the resumed run finds the
    best recorded in ``iter_N`` and rewrites ``best_model`` from it.

    Args:
        save_dir (str): Output directory.
        interval (int): Iterations between checkpoints.
        keep (int): Newest ``iter_N`` of this run kept (<= 0: all).
    """

    def __init__(self, save_dir, interval, keep):
        self.save_dir = save_dir
        self.interval = interval
        self.keep = keep
        self.best = {}
        self.pending_losses = {}

    def before_train(self, trainer):
        if trainer.rank != 0:
            return
        ckpt.remove_temporaries(self.save_dir)
        resume = trainer.resume
        if resume is None:
            return
        # a checkpoint records the best before it; older ones (no 'best') trust best_model/ of the run
        self.best = resume.info.get('best') or ckpt.read_best(self.save_dir, resume.run_id)
        if self.best and self.best.get('iter') == resume.iteration and \
                ckpt.read_best(self.save_dir, trainer.run_id) != self.best:
            self._save_best(trainer, resume.model_state)  # the kill came between iter_N and best_model

    def after_step(self, trainer, step):
        self.pending_losses[step.iteration] = step.losses
        if not due(step.iteration, self.interval, trainer.iters):
            return
        if trainer.rank != 0:
            self.pending_losses = {}
            return
        metrics, iteration = step.metrics, step.iteration
        improved = bool(metrics) and metrics['mIoU'] > self.best.get('mIoU', -1.0)
        if improved:
            self.best = {'iter': iteration, 'mIoU': metrics['mIoU'], 'Acc': metrics['Acc'],
                         'run_id': trainer.run_id}
        info = {'iter': iteration, **trainer.checkpoint_info(), 'metrics': metrics, 'best': self.best,
                'losses': {str(i): v for i, v in sorted(self.pending_losses.items())}}
        states = {}
        for hook in trainer.hooks:
            states.update(hook.checkpoint_state(trainer))
        state = trainer.core_model.state_dict()
        path = ckpt.save_checkpoint(self.save_dir, f'iter_{iteration}', state, trainer.optimizer_state(), info,
                                    extra_states=states)
        if improved:
            self._save_best(trainer, state)
        ckpt.prune_checkpoints(self.save_dir, self.keep, trainer.run_id)
        self.pending_losses = {}
        logger.info(f'saved {path}')

    def _save_best(self, trainer, state):
        ckpt.save_checkpoint(self.save_dir, ckpt.BEST_DIR, state, None, self.best)
        logger.info(f'[EVAL] best model so far: mIoU {self.best["mIoU"]:.4f} at iter {self.best["iter"]}')


class VisualDLHook(Hook):
    """Writes the scalars of every step to the run's VisualDL record file in ``logdir`` (``--use_vdl``,
    rank 0), flushed every ``flush_interval`` iterations so a killed run keeps its curves up to its last
    checkpoint. A resumed run first drops the records after its checkpoint (see :mod:`paddle_psp.engine.vdl`).

    Args:
        logdir (str): The training ``save_dir``.
        flush_interval (int): Iterations between flushes (the checkpoint interval).
        file_name (str): The run's record file name.
    """

    def __init__(self, logdir, flush_interval, file_name):
        self.writer = ScalarWriter(logdir, file_name)
        self.flush_interval = flush_interval

    def before_train(self, trainer):
        if trainer.resume is not None:
            truncate_records(os.path.join(self.writer.logdir, self.writer.file_name), trainer.start_iter)

    def after_step(self, trainer, step):
        if step.scalars:
            self.writer.add_scalars(step.scalars, step.iteration)
        if due(step.iteration, self.flush_interval, trainer.iters):
            self.writer.flush()

    def after_train(self, trainer):
        self.writer.close()


class Window:
    """Running sums of losses and timings between two log lines."""

    def __init__(self):
        self.reset()

    def reset(self):
        """Start a new window."""
        self.count, self.losses, self.reader_cost, self.batch_cost = 0, None, 0.0, 0.0

    def add(self, losses, reader_cost, batch_cost):
        """Add one iteration."""
        self.count += 1
        self.losses = list(losses) if self.losses is None else [a + b for a, b in zip(self.losses, losses)]
        self.reader_cost += reader_cost
        self.batch_cost += batch_cost

    def averages(self):
        """(mean losses, mean reader cost, mean batch cost)."""
        n = max(self.count, 1)
        return [v / n for v in self.losses], self.reader_cost / n, self.batch_cost / n

