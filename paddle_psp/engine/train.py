"""``paddleseg train``: iteration-based training with PaddleSeg's flags, exact resume and data parallelism.

The loop is short: a batch, a step, then the hooks (:mod:`paddle_psp.engine.hooks`: logging, evaluation,
checkpoints, VisualDL) in order. Exact resume: augmentation randomness is seeded per sample from
(seed, epoch, index), shuffling per epoch from (seed, epoch) (:mod:`paddle_psp.engine.loader`), dropout per
iteration from (seed, iteration, rank); the optimizer and LR state are in ``model.pdopt``. So
``--resume_model save_dir/iter_N`` repeats what a run that was never stopped does, and
``--resume_model auto`` picks the newest complete checkpoint in ``--save_dir`` (or starts fresh when there
is none), so the same command can simply be run again after a crash.

Runs never mix: ``--save_dir`` is checked before any work, and a fresh run into a folder that holds another
run's checkpoints is refused; while a run writes there it holds the folder's lock, and a second run into it
is refused in one line naming the first (:mod:`paddle_psp.engine.save_dir_lock`). Each run has an id,
recorded in its checkpoints: pruning and ``best_model`` touch only the run's own.

Data parallel (CPU with gloo, or GPUs)::

    python -m paddle.distributed.launch --nproc_per_node 2 $(which paddleseg) train --config X.yml
"""
import contextlib
import math
import os
import secrets
import sys
import time

import paddle

from paddle_psp.config import load_config
from paddle_psp.core.device import resolve_device, use_device
from paddle_psp.core.errors import UserError
from paddle_psp.core.log import log_file, logger
from paddle_psp.core.outputs import require_dir
from paddle_psp.core.runtime import THREADS_VAR, math_threads
from paddle_psp.data import workers
from paddle_psp.engine import checkpoint as ckpt
from paddle_psp.engine import vdl
from paddle_psp.engine.ema import EMAHook
from paddle_psp.engine.gradients import GradientRelease
from paddle_psp.engine.hooks import CheckpointHook, EvalHook, LogHook, Step, VisualDLHook
from paddle_psp.engine.loader import derive_seed, make_loader, unpack_batch
from paddle_psp.engine.profiler import ProfilerHook, parse_profiler_options
from paddle_psp.engine.save_dir_lock import exclusive_save_dir
from paddle_psp.models.layers import NCHWAdapter
from paddle_psp.engine.flags import train_parser

AMP_BLACK_LIST = {'bilinear_interp_v2'}
TRAIN_LOG = 'train.log'


def main(argv=None, extra_hooks=()):
    """Entry point of ``paddleseg train``; returns the exit status.

    Args:
        argv (list[str], optional): The flags. Default: ``sys.argv[1:]``.
        extra_hooks (sequence[Hook], optional): Called after the standard hooks (tests inject faults
            this way). Default: ().
    """
    args = train_parser().parse_args(sys.argv[1:] if argv is None else argv)
    check_flags(args)
    requested = args.resume_model
    args.resume_model = check_save_dir(args.save_dir, requested)
    trainer = Trainer(args)
    trainer.hooks.extend(extra_hooks)
    with exclusive_save_dir(args.save_dir, lambda: check_save_dir(args.save_dir, requested, True), args.resume_model,
                            enabled=trainer.rank == 0):  # rank 0 holds it for the job
        # rank 0 reports: its log lines also go to SAVE_DIR/train.log (appended by a resumed run)
        with log_file(os.path.join(args.save_dir, TRAIN_LOG)) if trainer.rank == 0 else contextlib.nullcontext():
            trainer.run()
    return 0


def check_flags(args):
    """One-line errors for flag values no config can fix."""
    for flag in ('save_interval', 'log_iters'):
        if getattr(args, flag) <= 0:
            raise UserError(f'--{flag}: expected a positive integer, got {getattr(args, flag)}')
    if args.num_workers < 0:
        raise UserError(f'--num_workers: expected 0 or more, got {args.num_workers}')
    if args.profiler_options is not None:
        parse_profiler_options(args.profiler_options)
    if args.precision == 'fp16' and resolve_device(args.device) == 'cpu':
        raise UserError('--precision fp16: mixed precision (AMP) runs on GPU only; expected --precision fp32 '
                        'on CPU')


def check_save_dir(save_dir, resume_model, quiet=False):
    """Check ``--save_dir`` before any work: a writable folder (or one that can be created), holding no
    other run's checkpoints. Returns the checkpoint to resume from (``auto`` resolved, logged unless
    ``quiet``), or None.

    Raises:
        UserError: One line naming the folder and the ways on.
    """
    require_dir(save_dir, 'a folder for checkpoints and VisualDL logs', '--save_dir')
    if resume_model == 'auto':
        resume_model = ckpt.latest_checkpoint(save_dir)
        if not quiet:
            logger.info(f'--resume_model auto: resuming from {resume_model}' if resume_model else
                        f'--resume_model auto: no complete checkpoint in {save_dir}, starting a new run')
    ours = resume_model and not ckpt.is_paddleseg_checkpoint(resume_model)  # PaddleSeg's iter_N has no run id
    run_id = ckpt.read_info(resume_model).get('run_id') if ours else None
    others = ckpt.other_runs(save_dir, run_id) if run_id or not resume_model else []
    if others:
        listed = others[0] if len(others) == 1 else f'{others[0]} .. {others[-1]}'
        latest = ckpt.latest_checkpoint(save_dir)
        resume = f'--resume_model {latest} (or auto)' if latest else '--resume_model with one of its checkpoints'
        raise UserError(f'--save_dir {save_dir}: holds checkpoints of another run ({listed}); expected another '
                        f'--save_dir for a new run, or {resume} to continue that run')
    return resume_model


# ---------------------------------------------------------------------------------------------- trainer
class Trainer:
    """Everything one training run needs, validated before anything is written.

    Args:
        args (argparse.Namespace): Parsed ``paddleseg train`` flags.

    Attributes:
        hooks (list[Hook]): Called in order around the loop; see :mod:`paddle_psp.engine.hooks`.
        resume (ResumeState or None): The checkpoint the run continues from.
        core_model (paddle.nn.Layer): The model without its data-parallel wrapper.
        seed (int): The run's seed (--seed, the resumed run's, or drawn).
        data_format (str): The model's layout, 'NCHW' or 'NHWC'.
        math_threads (int): Paddle's math-library threads in this process (recorded in checkpoints: the
            summation order, so the exact weights, depends on it).
    """

    def __init__(self, args):
        self.args = args
        self.device = use_device(args.device)
        self.nranks = paddle.distributed.get_world_size()
        self.rank = paddle.distributed.get_rank()
        self.math_threads = math_threads()
        if self.rank != 0:
            logger.setLevel('WARNING')  # rank 0 reports
        self.cfg = load_config(args.config, opts=args.opts, learning_rate=args.learning_rate,
                               batch_size=args.batch_size, iters=args.iters, data_format=args.data_format,
                               repeats=args.repeats)
        self.cfg.check_training()
        self.iters, self.batch_size = self.cfg.iters, self.cfg.batch_size
        self.resume = ckpt.ResumeState.load(args.resume_model) if args.resume_model else None
        self.start_iter = self.resume.iteration if self.resume else 0
        self.seed = self._choose_seed()
        self.run_id = (self.resume and self.resume.run_id) or ckpt.new_run_id()
        self.vdl_file = self._record_file_name()
        self._build_components()
        if self.resume:
            self._restore(self.resume)
        self.amp = args.precision == 'fp16'
        self.scaler = self._setup_amp()
        self.core_model = self.model
        # As PaddleSeg, the model's own layout decides (--data_format or a config's model.data_format)
        self.data_format = getattr(self.core_model, 'data_format', 'NCHW')
        if self.nranks > 1:
            if not paddle.distributed.is_initialized():
                paddle.distributed.init_parallel_env()
            self.model = paddle.DataParallel(self.model)
        self.forward = self._training_forward()
        self.gradients = GradientRelease(self.core_model.parameters())
        self.hooks = self._standard_hooks()
        self.batches_per_epoch = None  # known once the loader exists

    def _choose_seed(self):
        """--seed, else the resumed run's, else a random one (PaddleSeg then seeds nothing; exact resume
        needs one, so it is drawn, logged after the first iteration and saved in every checkpoint); every
        rank uses rank 0's."""
        if self.args.seed is not None:
            return self.args.seed
        if self.resume:
            return self.resume.seed
        seed = secrets.randbelow(2 ** 31)
        if self.nranks > 1:
            paddle.distributed.init_parallel_env()
            shared = paddle.to_tensor([seed], dtype='int64')
            paddle.distributed.broadcast(shared, src=0)
            seed = int(shared.numpy()[0])
        return seed

    def as_nchw(self, model):
        """``model`` with an NCHW interface (for evaluation): itself, or wrapped when it runs NHWC."""
        return NCHWAdapter(model) if self.data_format == 'NHWC' else model

    def checkpoint_info(self):
        """What every checkpoint of this run records besides the iteration and its results (see
        :class:`~paddle_psp.engine.hooks.CheckpointHook`): the fields exact resume and the run checks read."""
        return {'iters': self.iters, 'seed': self.seed, 'batch_size': self.batch_size, 'nranks': self.nranks,
                'math_threads': self.math_threads, 'config': os.path.abspath(self.cfg.path),
                'run_id': self.run_id, 'vdl_file': self.vdl_file,
                'param_names': ckpt.parameter_names(self.core_model)}

    def _record_file_name(self):
        """This run's VisualDL record file: the resumed run's (older checkpoints: the newest there), else new."""
        if self.resume is None:
            return vdl.new_record_name(self.run_id)
        return (self.resume.info.get('vdl_file') or vdl.newest_record_name(self.args.save_dir)
                or vdl.new_record_name(self.run_id))

    def _build_components(self):
        """Datasets, model, loss, LR schedule and optimizer from the config (UserErrors name the key)."""
        cfg = self.cfg
        self.train_dataset = cfg.train_dataset  # its file list repeated for --repeats
        shard = math.ceil(len(self.train_dataset) / self.nranks)
        if shard < self.batch_size:
            raise UserError(f'{cfg.path}: batch_size: {self.batch_size} per device is larger than the '
                            f'{shard} images each of {self.nranks} ranks gets; expected at most {shard}')
        self.val_dataset = cfg.val_dataset if self.args.do_eval else None
        paddle.seed(self.seed)  # initial weights
        self.model = cfg.model
        if self.device == 'gpu' and self.nranks > 1:
            self.model = paddle.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.losses = cfg.loss
        self.lr_scheduler = cfg.lr_scheduler
        self.optimizer = cfg.optimizer

    def _restore(self, resume):
        """Load a checkpoint's weights and optimizer/LR state; refuse one of another model."""
        if resume.iteration >= self.iters:
            raise UserError(f'--resume_model {resume.path}: the checkpoint is at iter {resume.iteration}, not '
                            f'below iters {self.iters}; expected a larger --iters to continue')
        own = self.model.state_dict()
        saved = resume.model_state
        wrong = [k for k in own if k not in saved or list(saved[k].shape) != list(own[k].shape)]
        if wrong:
            raise UserError(f'--resume_model {resume.path}: weights of another model ({len(wrong)} tensors '
                            f'missing or of another shape, first {wrong[0]}); expected a checkpoint of this config')
        self.model.set_state_dict(saved)
        optimizer_state = {k: v for k, v in resume.optimizer_state.items() if k != 'GradScaler'}
        if resume.param_names is not None:
            optimizer_state = ckpt.remap_optimizer_state(optimizer_state, resume.param_names,
                                                         ckpt.parameter_names(self.model))
        self.optimizer.set_state_dict(optimizer_state)
        if resume.batch_size is not None and (resume.batch_size, resume.nranks) != (self.batch_size, self.nranks):
            logger.warning(f'resuming with batch_size {self.batch_size} on {self.nranks} ranks, the checkpoint '
                           f'used {resume.batch_size} on {resume.nranks}: data order will differ')
        saved_threads = resume.info.get('math_threads')  # None: a checkpoint from before it was recorded
        if saved_threads is not None and saved_threads != self.math_threads:
            logger.warning(f'resuming with {self.math_threads} math threads, the checkpoint was trained with '
                           f'{saved_threads}: the continuation will not be bit-identical to an uninterrupted run '
                           f'(set {THREADS_VAR}={saved_threads} for that)')
        logger.info(f'resumed from {resume.path} at iter {resume.iteration}')

    def _setup_amp(self):
        """GradScaler (and O2 decoration) for --precision fp16; None for fp32."""
        if not self.amp:
            return None
        if self.args.amp_level == 'O2':
            self.model, self.optimizer = paddle.amp.decorate(models=self.model, optimizers=self.optimizer,
                                                             level='O2', save_dtype='float32')
        scaler = paddle.amp.GradScaler(init_loss_scaling=1024)
        if self.resume and 'GradScaler' in self.resume.optimizer_state:
            scaler.load_state_dict(self.resume.optimizer_state['GradScaler'])
        return scaler

    def _training_forward(self):
        """What a training step calls: the model, or with PaddleSeg's top-level config key
        ``to_static_training: True`` its forward converted to one static program (``paddle.jit.to_static``;
        the same weights and bit-identical results, faster on CPU; the conversion costs seconds once per
        process). The model itself stays dygraph, so evaluation and checkpoints are unchanged. With several
        processes the DataParallel model runs in dygraph, with a warning."""
        if not self.cfg.dic.get('to_static_training'):
            return self.model
        if self.nranks > 1:
            logger.warning(f'{self.cfg.path}: to_static_training: ignored with {self.nranks} processes; '
                           'data-parallel training runs the dygraph model')
            return self.model
        logger.info('to_static_training: the training forward runs as a static program')
        return paddle.jit.to_static(self.model.forward, full_graph=True)

    def _standard_hooks(self):
        """Logging, evaluation (--do_eval), EMA (--use_ema), VisualDL (--use_vdl, rank 0), checkpoints and
        the profiler (--profiler_options), in that order: the records of an iteration are on disk before
        its checkpoint, so a resumed run loses none."""
        args = self.args
        hooks = [LogHook(args.log_iters)]
        if args.do_eval:
            hooks.append(EvalHook(self.val_dataset, args.save_interval, args.num_workers))
        if args.use_ema:
            hooks.append(EMAHook(args.save_dir, args.save_interval, self.val_dataset, args.num_workers))
        if args.use_vdl and self.rank == 0:
            hooks.append(VisualDLHook(args.save_dir, args.save_interval, self.vdl_file))
        hooks.append(CheckpointHook(args.save_dir, args.save_interval, args.keep_checkpoint_max))
        if args.profiler_options is not None:
            hooks.append(ProfilerHook(parse_profiler_options(args.profiler_options)))
        return hooks

    def optimizer_state(self):
        """The optimizer's state dict, with the GradScaler's under ``'GradScaler'`` for fp16."""
        state = self.optimizer.state_dict()
        if self.scaler is not None:
            state['GradScaler'] = self.scaler.state_dict()
        return state

    # ------------------------------------------------------------------------------------------ the loop
    def run(self):
        """Train from ``start_iter`` to ``iters``; the hooks log, evaluate and save on the way."""
        loader = make_loader(self.train_dataset, self.batch_size, self.nranks, self.rank, self.seed,
                             self.cfg.num_classes, self.cfg.ignore_index, start_batch=self.start_iter,
                             num_workers=self.args.num_workers)
        self.batches_per_epoch = loader.batch_sampler.batches_per_epoch
        for hook in self.hooks:
            hook.before_train(self)
        self.model.train()
        iteration = self.start_iter
        tic = time.time()
        with contextlib.closing(workers.read(loader)) as batches:  # the loader's workers stop at its end
            while iteration < self.iters:
                images, labels, indices = unpack_batch(next(batches))
                reader_cost = time.time() - tic
                iteration += 1
                paddle.seed(derive_seed(self.seed, 0xD509, iteration, self.rank))  # dropout
                lr = self.optimizer.get_lr()
                losses = self.train_step(images, labels)
                if iteration == 1 and self.args.seed is None:  # after the first batch proved the data good
                    logger.info(f'seed: {self.seed} (drawn; --seed {self.seed} repeats this run)')
                step = Step(iteration, lr, losses, indices, reader_cost, time.time() - tic)
                for hook in self.hooks:
                    hook.after_step(self, step)
                tic = time.time()
        for hook in self.hooks:
            hook.after_train(self)

    def train_step(self, images, labels):
        """Forward, weighted losses, backward, optimizer and LR step; returns [total, loss_0, loss_1, ...]."""
        if self.data_format == 'NHWC':
            images = images.transpose([0, 2, 3, 1])
        with paddle.amp.auto_cast(enable=self.amp, level=self.args.amp_level, custom_black_list=AMP_BLACK_LIST):
            logits = self.forward(images)
        coefs, loss_layers = self.losses['coef'], self.losses['types']
        if len(logits) != len(coefs):
            raise UserError(f'{self.cfg.path}: loss.coef: {len(coefs)} coefficients but the model returns '
                            f'{len(logits)} outputs while training; expected one per output')
        weighted = [coef * layer(logit.astype('float32'), labels)
                    for coef, layer, logit in zip(coefs, loss_layers, logits)]
        loss = paddle.add_n(weighted)
        scaled = self.scaler.scale(loss) if self.scaler is not None else loss
        scaled.backward()
        self.gradients.before_update()
        if self.scaler is not None:
            self.scaler.minimize(self.optimizer, scaled)
        else:
            self.optimizer.step()
        self.gradients.after_update(self.optimizer)
        self.lr_scheduler.step()
        values = [float(loss)] + [float(w) for w in weighted]
        if not math.isfinite(values[0]):
            logger.warning(f'loss is {values[0]} (not finite)')
        return values
