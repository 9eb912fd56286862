"""``--use_ema``: an exponential moving average of the weights, trained and evaluated as PaddleSeg 2.8 does.

PaddleSeg 2.8 (``paddleseg/core/train.py`` with ``paddleseg/utils/ema.py``):

- the EMA model is a copy of the model, in eval mode, without gradients; when training starts its
  floating-point state (parameters *and* BatchNorm running statistics) is set to the model's;
- after every iteration ``i`` (1-based, after the optimizer step) each floating-point entry becomes
  ``d * ema + (1 - d) * weight`` with ``d = min(1 - 1 / (i + 1), 0.999)``;
- with ``--do_eval`` both the model and the EMA model are evaluated at every save; ``best_model/`` keeps
  the *model's* weights of the best model mIoU, ``ema_best_model/ema_model.pdparams`` the EMA weights of
  the best EMA mIoU, and every ``iter_N`` also holds ``ema_model.pdparams``.

One difference, for exact resume: PaddleSeg restarts the average from the model's weights when resuming;
here it is restored from ``iter_N/ema_model.pdparams`` (and restarted as PaddleSeg only when the
checkpoint has none).
"""
import copy

import paddle

from paddle_psp.core.log import logger
from paddle_psp.engine import checkpoint as ckpt
from paddle_psp.evaluation.evaluate import evaluate
from paddle_psp.engine.hooks import Hook, due

DECAY = 0.999
EMA_FILE = ckpt.EMA_FILE
EMA_BEST_DIR = 'ema_best_model'


def ema_decay(iteration, decay=DECAY):
    """The decay PaddleSeg uses after 1-based ``iteration``: ``min(1 - 1 / (iteration + 1), decay)``."""
    return min(1.0 - 1.0 / (iteration + 1), decay)


class ModelEMA:
    """A moving average of a model's floating-point state (parameters and BatchNorm statistics).

    Args:
        model (paddle.nn.Layer): The model to average; copied, the copy is :attr:`model`.
        decay (float, optional): Upper bound of the decay. Default: 0.999 (PaddleSeg's).

    Attributes:
        model (paddle.nn.Layer): The averaged copy, in eval mode, without gradients.
    """

    def __init__(self, model, decay=DECAY):
        self.model = copy.deepcopy(model)
        self.model.eval()
        for param in self.model.parameters():
            param.stop_gradient = True
        self.decay = decay

    def reset(self, model):
        """Set the average to ``model``'s floating-point state (PaddleSeg's ``init_ema_params``)."""
        source = model.state_dict()
        with paddle.no_grad():
            for key, value in self.model.state_dict().items():
                if paddle.is_floating_point(value):
                    value.set_value(source[key].detach().astype(value.dtype))

    def update(self, model, iteration):
        """Fold ``model``'s state in after 1-based ``iteration`` (PaddleSeg's ``update_ema_model``)."""
        decay = ema_decay(iteration, self.decay)
        source = model.state_dict()
        with paddle.no_grad():
            for key, value in self.model.state_dict().items():
                if paddle.is_floating_point(value):
                    value.set_value(value * decay + source[key].detach().astype(value.dtype) * (1.0 - decay))

    def state_dict(self):
        """The averaged state dict (saved as ``ema_model.pdparams``)."""
        return self.model.state_dict()

    def set_state_dict(self, state):
        """Restore an average saved with :meth:`state_dict`."""
        self.model.set_state_dict(state)


class EMAHook(Hook):
    """Owns the average: builds :attr:`ema` (a :class:`ModelEMA`) when training starts, restores it from
    the resumed checkpoint's ``ema_model.pdparams``, keeps it up to date after every step, adds it to every
    ``iter_N`` (:meth:`checkpoint_state`) and, with ``--do_eval``,
    evaluates it at every save: ``ema_mIoU``... into the step's metrics, ``Evaluate/Ema_mIoU`` and
    ``Evaluate/Ema_Acc`` into its scalars, and ``ema_best_model/`` on rank 0 when its mIoU improved.

    Goes after :class:`~paddle_psp.engine.hooks.EvalHook` and before
    :class:`~paddle_psp.engine.hooks.CheckpointHook` (which saves the average into ``iter_N``).

    Args:
        save_dir (str): Output directory.
        interval (int): Iterations between evaluations (the checkpoint interval).
        dataset (paddle.io.Dataset or None): The validation dataset (None: no evaluation).
        num_workers (int, optional): Processes reading validation images. Default: 0.

    Attributes:
        ema (ModelEMA or None): The average (None before training starts).
    """

    def __init__(self, save_dir, interval, dataset=None, num_workers=0):
        self.save_dir = save_dir
        self.interval = interval
        self.dataset = dataset
        self.num_workers = num_workers
        self.best = {}
        self.ema = None

    def before_train(self, trainer):
        resume = trainer.resume
        self.ema = ModelEMA(trainer.core_model)
        saved = resume.state_file(EMA_FILE) if resume is not None else None
        if saved is not None:
            self.ema.set_state_dict(saved)
            logger.info(f'EMA restored from {resume.path}')
        else:
            self.ema.reset(trainer.core_model)
            if resume is not None:
                logger.info(f'{resume.path} holds no {EMA_FILE}: the EMA starts from the resumed weights')
        self.best = ckpt.read_best(self.save_dir, trainer.run_id, EMA_BEST_DIR) if resume else {}

    def checkpoint_state(self, trainer):
        """``{'ema_model.pdparams': the average}``, as PaddleSeg's ``iter_N`` holds it."""
        return {EMA_FILE: self.ema.state_dict()}

    def after_step(self, trainer, step):
        self.ema.update(trainer.core_model, step.iteration)
        if self.dataset is None or not due(step.iteration, self.interval, trainer.iters):
            return
        scores = evaluate(trainer.as_nchw(self.ema.model), self.dataset, num_workers=self.num_workers,
                          print_detail=trainer.rank == 0)
        ema_metrics = {key: float(scores[key]) for key in ('mIoU', 'Acc', 'Kappa', 'Dice') if key in scores}
        logger.info(f'[EVAL] EMA iter {step.iteration}: ' + ', '.join(f'{k}: {v:.4f}' for k, v in ema_metrics.items()))
        step.metrics.update({f'ema_{key}': value for key, value in ema_metrics.items()})
        step.scalars.update({'Evaluate/Ema_mIoU': ema_metrics['mIoU'], 'Evaluate/Ema_Acc': ema_metrics['Acc']})
        if trainer.rank != 0:
            return
        if ema_metrics['mIoU'] > self.best.get('mIoU', -1.0):
            self.best = {'iter': step.iteration, 'mIoU': ema_metrics['mIoU'], 'Acc': ema_metrics['Acc'],
                         'run_id': trainer.run_id}
            ckpt.save_checkpoint(self.save_dir, EMA_BEST_DIR, None, None, self.best,
                                 extra_states=self.checkpoint_state(trainer))
        logger.info(f'[EVAL] The EMA model with the best validation mIoU ({self.best["mIoU"]:.4f}) was saved '
                    f'at iter {self.best["iter"]}.')
