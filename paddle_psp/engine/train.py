"""``paddleseg train``: iteration-based training with PaddleSeg's flags, exact resume and data parallelism.

Exact resume: augmentation randomness is seeded per sample from (seed, epoch, index), shuffling per epoch
from (seed, epoch), dropout per iteration from (seed, iteration, rank); the optimizer and LR state are in
``model.pdopt``. So ``--resume_model save_dir/iter_N`` repeats what a run that was never stopped does.

Data parallel (CPU with gloo, or GPUs)::

    python -m paddle.distributed.launch --nproc_per_node 2 $(which paddleseg) train --config X.yml
"""
import argparse
import math
import os
import random
import signal
import sys
import time

import numpy as np
import paddle

from paddle_psp.engine import checkpoint as ckpt
from paddle_psp.engine.config import load_config
from paddle_psp.engine.vdl import ScalarWriter
from paddle_psp.core.errors import UserError, one_line
from paddle_psp.core.log import logger
from paddle_psp.core.util import format_duration, has_gpu

# Test hook: the process SIGKILLs itself right after the checkpoint of this iteration is complete.
KILL_AFTER_SAVE_ENV = 'PADDLE_PSP_KILL_AFTER_SAVE'
# Debug hook: every rank writes its final parameters (rank{R}.pdparams) and the sample indices it
# trained on (rank{R}.json) into this directory, to check data-parallel replicas.
DUMP_RANKS_ENV = 'PADDLE_PSP_DUMP_RANKS'
AMP_BLACK_LIST = {'bilinear_interp_v2'}


def build_parser():
    """The ``paddleseg train`` argument parser (PaddleSeg's tools/train.py flags, plus --device)."""
    parser = argparse.ArgumentParser(prog='paddleseg train', description=__doc__.split('\n')[0])
    parser.add_argument('--config', required=True, help='YAML config (PaddleSeg format, _base_ allowed)')
    parser.add_argument('--save_dir', default='./output', help='checkpoints and VisualDL logs (./output)')
    parser.add_argument('--iters', type=int, help='total iterations (overrides the config)')
    parser.add_argument('--batch_size', type=int, help='images per device (overrides the config)')
    parser.add_argument('--learning_rate', type=float, help='base learning rate (overrides the config)')
    parser.add_argument('--do_eval', action='store_true', help='evaluate at every save; keep best_model/')
    parser.add_argument('--use_vdl', action='store_true', help='write VisualDL scalars to save_dir')
    parser.add_argument('--resume_model', help='continue from a checkpoint directory save_dir/iter_N')
    parser.add_argument('--save_interval', type=int, default=1000, help='iterations between checkpoints (1000)')
    parser.add_argument('--log_iters', type=int, default=10, help='iterations between log lines (10)')
    parser.add_argument('--keep_checkpoint_max', type=int, default=5, help='newest checkpoints kept (5)')
    parser.add_argument('--num_workers', type=int, default=0, help='data loading processes (0)')
    parser.add_argument('--seed', type=int,
                        help='fixes shuffling, augmentation and dropout (default 0, or the resumed run\'s)')
    parser.add_argument('--device', choices=['cpu', 'gpu'], help='default: gpu when Paddle has CUDA, else cpu')
    parser.add_argument('--precision', choices=['fp32', 'fp16'], default='fp32', help='fp16: AMP, GPU only')
    parser.add_argument('--amp_level', choices=['O1', 'O2'], default='O1', help='AMP level with fp16 (O1)')
    parser.add_argument('--opts', nargs='+', default=[], metavar='KEY=VALUE',
                        help='override config keys, e.g. train_dataset.dataset_root=data/cityscapes')
    return parser


def main(argv=None):
    """Entry point of ``paddleseg train``; returns the exit status."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    check_flags(args)
    trainer = Trainer(args)
    trainer.run()
    return 0


def check_flags(args):
    """One-line errors for flag values no config can fix."""
    for flag in ('save_interval', 'log_iters'):
        if getattr(args, flag) <= 0:
            raise UserError(f'--{flag}: expected a positive integer, got {getattr(args, flag)}')
    if args.num_workers < 0:
        raise UserError(f'--num_workers: expected 0 or more, got {args.num_workers}')
    if args.precision == 'fp16' and select_device(args.device) == 'cpu':
        raise UserError('--precision fp16: mixed precision (AMP) runs on GPU only; expected --precision fp32 '
                        'on CPU')


def select_device(requested):
    """'cpu' or 'gpu': the request, else gpu when this Paddle build has CUDA and a GPU."""
    gpu = has_gpu()
    if requested == 'gpu' and not gpu:
        raise UserError('--device gpu: this Paddle build has no CUDA or no GPU is visible; expected --device cpu')
    return requested or ('gpu' if gpu else 'cpu')


# ------------------------------------------------------------------------------------------- the data
def derive_seed(*parts):
    """A 32-bit seed from integers ``parts`` (independent streams for different tuples)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


class SeededSamples(paddle.io.Dataset):
    """Sample ``(epoch, index)`` of a PaddleSeg dataset, its random augmentation seeded from
    (seed, epoch, index), so it is the same in any worker and after a resume.

    Returns ``(image, label, index, failure)``; ``failure`` is '' or a one-line message naming the file
    (an exception inside a DataLoader thread would hang Paddle's loader instead of surfacing).
    """

    def __init__(self, dataset, seed):
        self.dataset = dataset
        self.seed = seed

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        sample_seed = derive_seed(self.seed, epoch, index)
        random.seed(sample_seed)  # PaddleSeg's transforms draw from both global generators
        np.random.seed(sample_seed)
        try:
            sample = self.dataset[index]
            return sample['img'], sample['label'], index, ''
        except Exception as err:  # reported with the file name by the collate step
            return None, None, index, describe_failure(self.dataset.file_list[index], err)


def describe_failure(files, err):
    """A one-line message naming the image or label file that could not be loaded."""
    import cv2
    from PIL import Image
    image_path, label_path = files
    for kind, path in (('image', image_path), ('label', label_path)):
        if path is None:
            continue
        if not os.path.isfile(path):
            return f'{path}: {kind} file missing; expected the file listed by the dataset'
        if kind == 'image' and cv2.imread(path) is None:
            return f'{path}: unreadable image; expected a PNG/JPEG file'
        if kind == 'label':
            try:
                Image.open(path).load()
            except Exception:
                return f'{path}: unreadable label; expected a single-channel PNG of class ids'
    return f'{image_path}: could not be loaded and transformed: {one_line(err)}'


def die_with_parent(worker_id=None):
    """DataLoader ``worker_init_fn``: ask Linux to SIGKILL this worker when the trainer dies, so a killed
    run leaves no orphaned loader processes holding its pipes open (elsewhere: no-op)."""
    try:
        import ctypes
        ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the trainer died before the request took effect
        os._exit(1)


class BatchCollator:
    """Stack samples into (images, labels, indices, failure) and check the labels of the whole batch.

    ``failure`` is a uint8 array holding a UTF-8 message, or a single 0 byte when the batch is good.

    Args:
        file_list (list): The dataset's (image, label) paths, to name a bad file.
        num_classes (int): Labels must lie in [0, num_classes) ...
        ignore_index (int): ... or equal this value.
    """

    def __init__(self, file_list, num_classes, ignore_index):
        self.file_list = file_list
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def __call__(self, samples):
        indices = np.array([s[2] for s in samples], 'int64')
        try:
            failure = next((s[3] for s in samples if s[3]), '')
            if not failure:
                images = np.stack([s[0] for s in samples]).astype('float32')
                labels = np.stack([s[1] for s in samples]).astype('int64')
                if labels.ndim == 4:
                    labels = labels[:, 0]
                failure = self.label_failure(labels, indices)
        except ValueError as err:
            failure = (f'{self.file_list[indices[0]][0]}: its batch cannot be stacked ({err}); expected '
                       'transforms that give every image the same size (e.g. RandomPaddingCrop)')
        if failure:
            return np.zeros([1], 'float32'), np.zeros([1], 'int64'), indices, np.frombuffer(
                failure.encode(), 'uint8').copy()
        return images, labels, indices, np.zeros([1], 'uint8')

    def label_failure(self, labels, indices):
        """'' when every label is a class id or the ignore index; else a message naming the label file."""
        bad = (labels < 0) | ((labels >= self.num_classes) & (labels != self.ignore_index))
        if not bad.any():
            return ''
        row = int(bad.reshape(len(labels), -1).any(axis=1).argmax())
        values = np.unique(labels[row][bad[row]])[:5].tolist()
        return (f'{self.file_list[indices[row]][1]}: label values {values} outside [0, {self.num_classes}) '
                f'and not the ignore index {self.ignore_index}; expected class ids')


class EpochShardSampler(paddle.io.DistributedBatchSampler):
    """Endless batches of ``(epoch, index)`` keys: each epoch a permutation seeded from (seed, epoch), padded
    and split into one shard per rank as DistributedBatchSampler does, incomplete batches dropped.

    Args:
        dataset (paddle.io.Dataset): The samples.
        batch_size (int): Per rank.
        num_replicas (int): Number of ranks.
        rank (int): This rank.
        seed (int): Shuffling seed.
        start_batch (int, optional): Batches already consumed (the resumed iteration). Default: 0.
    """

    def __init__(self, dataset, batch_size, num_replicas, rank, seed, start_batch=0):
        super().__init__(dataset, batch_size, num_replicas=num_replicas, rank=rank, shuffle=True, drop_last=True)
        self.seed = seed
        self.start_batch = start_batch

    @property
    def batches_per_epoch(self):
        """Batches each rank takes from one epoch."""
        return self.num_samples // self.batch_size

    def shard(self, epoch):
        """This rank's indices of ``epoch``, in order."""
        size = len(self.dataset)
        order = np.random.RandomState(derive_seed(self.seed, 0x5EED, epoch)).permutation(size)
        order = np.resize(order, self.total_size)  # pads by repeating from the start
        return order[self.local_rank::self.nranks]

    def __iter__(self):
        epoch, skip = divmod(self.start_batch, self.batches_per_epoch)
        while True:
            shard = self.shard(epoch)
            for batch in range(skip, self.batches_per_epoch):
                yield [(epoch, int(i)) for i in shard[batch * self.batch_size:(batch + 1) * self.batch_size]]
            epoch, skip = epoch + 1, 0

    def __len__(self):
        return self.batches_per_epoch


# ---------------------------------------------------------------------------------------------- trainer
class Trainer:
    """Everything one training run needs, validated before anything is written.

    Args:
        args (argparse.Namespace): Parsed ``paddleseg train`` flags.
    """

    def __init__(self, args):
        self.args = args
        self.device = select_device(args.device)
        paddle.set_device(self.device)
        self.nranks = paddle.distributed.get_world_size()
        self.rank = paddle.distributed.get_rank()
        if self.rank != 0:
            logger.setLevel('WARNING')  # rank 0 reports
        self.save_dir = args.save_dir
        self.cfg = load_config(args.config, opts=args.opts, learning_rate=args.learning_rate,
                               batch_size=args.batch_size, iters=args.iters)
        self.cfg.check_training()
        self.iters, self.batch_size = self.cfg.iters, self.cfg.batch_size
        resumed = ckpt.load_checkpoint(args.resume_model) if args.resume_model else None
        self.start_iter = resumed[2]['iter'] if resumed else 0
        self.seed = args.seed if args.seed is not None else (resumed[2].get('seed', 0) if resumed else 0)
        self._build_components()
        if resumed:
            self._restore(*resumed)
        self.amp = args.precision == 'fp16'
        self.scaler = self._setup_amp(resumed[1] if resumed else None)
        self.core_model = self.model
        if self.nranks > 1:
            self.model = self._wrap_data_parallel(self.model)
        self.vdl = ScalarWriter(self.save_dir, enabled=args.use_vdl and self.rank == 0)
        self.best = self._previous_best() if resumed else {}

    def _build_components(self):
        """Datasets, model, loss, LR schedule and optimizer from the config (UserErrors name the key)."""
        cfg = self.cfg
        self.train_dataset = cfg.train_dataset
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

    def _restore(self, model_state, optimizer_state, info):
        """Load a checkpoint's weights and optimizer/LR state; refuse one of another model."""
        path = self.args.resume_model
        if self.start_iter >= self.iters:
            raise UserError(f'--resume_model {path}: the checkpoint is at iter {self.start_iter}, not below '
                            f'iters {self.iters}; expected a larger --iters to continue')
        own = self.model.state_dict()
        wrong = [k for k in own if k not in model_state or list(model_state[k].shape) != list(own[k].shape)]
        if wrong:
            raise UserError(f'--resume_model {path}: weights of another model ({len(wrong)} tensors missing or '
                            f'of another shape, first {wrong[0]}); expected a checkpoint of this config')
        self.model.set_state_dict(model_state)
        optimizer_state = {k: v for k, v in optimizer_state.items() if k != 'GradScaler'}
        if 'param_names' in info:
            optimizer_state = ckpt.remap_optimizer_state(optimizer_state, info['param_names'],
                                                         ckpt.parameter_names(self.model))
        self.optimizer.set_state_dict(optimizer_state)
        same_batches = (info.get('batch_size'), info.get('nranks')) == (self.batch_size, self.nranks)
        if not same_batches:
            logger.warning(f'resuming with batch_size {self.batch_size} on {self.nranks} ranks, the checkpoint '
                           f'used {info.get("batch_size")} on {info.get("nranks")}: data order will differ')
        logger.info(f'resumed from {path} at iter {self.start_iter}')

    def _setup_amp(self, optimizer_state):
        """GradScaler (and O2 decoration) for --precision fp16; None for fp32."""
        if not self.amp:
            return None
        if self.args.amp_level == 'O2':
            self.model, self.optimizer = paddle.amp.decorate(models=self.model, optimizers=self.optimizer,
                                                             level='O2', save_dtype='float32')
        scaler = paddle.amp.GradScaler(init_loss_scaling=1024)
        if optimizer_state and 'GradScaler' in optimizer_state:
            scaler.load_state_dict(optimizer_state['GradScaler'])
        return scaler

    def _wrap_data_parallel(self, model):
        paddle.distributed.init_parallel_env()
        return paddle.DataParallel(model)

    def _previous_best(self):
        best_dir = os.path.join(self.save_dir, ckpt.BEST_DIR)
        if not os.path.isfile(os.path.join(best_dir, ckpt.INFO_FILE)):
            return {}
        return ckpt.read_info(best_dir)

    # ------------------------------------------------------------------------------------------ the loop
    def make_loader(self):
        """A DataLoader of endless seeded batches of this rank's shard, starting after the resumed iteration."""
        self.sampler = EpochShardSampler(self.train_dataset, self.batch_size, self.nranks, self.rank, self.seed,
                                         start_batch=self.start_iter)
        collate = BatchCollator(self.train_dataset.file_list, self.cfg.num_classes, self.cfg.ignore_index)
        return paddle.io.DataLoader(SeededSamples(self.train_dataset, self.seed), batch_sampler=self.sampler,
                                    collate_fn=collate, num_workers=self.args.num_workers, return_list=True,
                                    worker_init_fn=die_with_parent)

    def run(self):
        """Train from ``start_iter`` to ``iters``, logging, saving, evaluating on the way."""
        if self.rank == 0:
            ckpt.remove_temporaries(self.save_dir)
        batches = iter(self.make_loader())
        window = Window()
        self.pending_losses = {}
        self.seen_indices = []
        self.model.train()
        iteration = self.start_iter
        tic = time.time()
        while iteration < self.iters:
            images, labels = self.next_batch(batches)
            reader_cost = time.time() - tic
            iteration += 1
            paddle.seed(derive_seed(self.seed, 0xD509, iteration, self.rank))  # dropout
            lr = self.optimizer.get_lr()
            losses = self.train_step(images, labels)
            self.pending_losses[iteration] = losses
            window.add(losses, reader_cost, time.time() - tic)
            if iteration % self.args.log_iters == 0 or iteration == self.iters:
                self.log(iteration, lr, window)
            if iteration % self.args.save_interval == 0 or iteration == self.iters:
                self.checkpoint(iteration)
            tic = time.time()
        del batches  # stops the loader's workers
        self.vdl.close()
        self.dump_rank_state()

    def next_batch(self, batches):
        """The next (images, labels); a UserError when a file of the batch could not be used."""
        images, labels, indices, failure = next(batches)
        failure = failure.numpy()
        if failure[0] != 0:
            raise UserError(bytes(failure).decode('utf-8', 'replace'))
        self.seen_indices.append(indices.numpy().tolist())
        return images, labels

    def train_step(self, images, labels):
        """Forward, weighted losses, backward, optimizer and LR step; returns [total, loss_0, loss_1, ...]."""
        with paddle.amp.auto_cast(enable=self.amp, level=self.args.amp_level, custom_black_list=AMP_BLACK_LIST):
            logits = self.model(images)
        coefs, loss_layers = self.losses['coef'], self.losses['types']
        if len(logits) != len(coefs):
            raise UserError(f'{self.cfg.path}: loss.coef: {len(coefs)} coefficients but the model returns '
                            f'{len(logits)} outputs while training; expected one per output')
        weighted = [coef * layer(logit.astype('float32'), labels)
                    for coef, layer, logit in zip(coefs, loss_layers, logits)]
        loss = paddle.add_n(weighted)
        if self.scaler is not None:
            scaled = self.scaler.scale(loss)
            scaled.backward()
            self.scaler.minimize(self.optimizer, scaled)
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.clear_grad()
        self.lr_scheduler.step()
        values = [float(loss)] + [float(w) for w in weighted]
        if not math.isfinite(values[0]):
            logger.warning(f'loss is {values[0]} (not finite)')
        return values

    def log(self, iteration, lr, window):
        """One PaddleSeg-style log line (averages since the last one) and the VisualDL scalars."""
        losses, reader_cost, batch_cost = window.averages()
        window.reset()
        epoch = (iteration - 1) // self.sampler.batches_per_epoch + 1
        eta = format_duration((self.iters - iteration) * batch_cost)
        ips = self.batch_size * self.nranks / max(batch_cost, 1e-9)
        if self.rank == 0:
            logger.info(f'[TRAIN] epoch: {epoch}, iter: {iteration}/{self.iters}, loss: {losses[0]:.4f}, '
                        f'lr: {lr:.6f}, batch_cost: {batch_cost:.4f}, reader_cost: {reader_cost:.5f}, '
                        f'ips: {ips:.4f} samples/sec | ETA {eta}')
        scalars = {'Train/loss': losses[0], 'Train/lr': lr, 'Train/batch_cost': batch_cost,
                   'Train/reader_cost': reader_cost}
        if len(losses) > 2:
            scalars.update({f'Train/loss_{i}': value for i, value in enumerate(losses[1:])})
        self.vdl.add_scalars(scalars, iteration)

    def checkpoint(self, iteration):
        """Evaluate (--do_eval); on rank 0 save best_model/ when mIoU improved, then iter_N, and prune."""
        metrics = self.evaluate(iteration) if self.args.do_eval else {}
        if self.rank != 0:
            self.pending_losses = {}
            return
        if metrics and metrics['mIoU'] > self.best.get('mIoU', -1.0):
            self.best = {'iter': iteration, 'mIoU': metrics['mIoU'], 'Acc': metrics['Acc']}
            ckpt.save_checkpoint(self.save_dir, ckpt.BEST_DIR, self.core_model.state_dict(), None, self.best)
            logger.info(f'[EVAL] best model so far: mIoU {self.best["mIoU"]:.4f} at iter {iteration}')
        info = {'iter': iteration, 'iters': self.iters, 'seed': self.seed, 'batch_size': self.batch_size,
                'nranks': self.nranks, 'config': os.path.abspath(self.cfg.path), 'metrics': metrics,
                'losses': {str(i): v for i, v in sorted(self.pending_losses.items())},
                'param_names': ckpt.parameter_names(self.core_model)}
        optimizer_state = self.optimizer.state_dict()
        if self.scaler is not None:
            optimizer_state['GradScaler'] = self.scaler.state_dict()
        path = ckpt.save_checkpoint(self.save_dir, f'iter_{iteration}', self.core_model.state_dict(),
                                    optimizer_state, info)
        ckpt.prune_checkpoints(self.save_dir, self.args.keep_checkpoint_max)
        self.pending_losses = {}
        logger.info(f'saved {path}')
        self.vdl.flush()
        if os.environ.get(KILL_AFTER_SAVE_ENV) == str(iteration):
            os.kill(os.getpid(), signal.SIGKILL)

    def evaluate(self, iteration):
        """mIoU and Acc on the validation set; every rank scores its share and the counts are summed."""
        from paddle_psp.engine.evaluate import evaluate  # the evaluation engine, loaded only when used
        metrics = evaluate(self.core_model, self.val_dataset, num_workers=self.args.num_workers,
                           print_detail=self.rank == 0)
        metrics = {key: float(metrics[key]) for key in ('mIoU', 'Acc', 'Kappa', 'Dice') if key in metrics}
        logger.info(f'[EVAL] iter {iteration}: ' + ', '.join(f'{k}: {v:.4f}' for k, v in metrics.items()))
        self.vdl.add_scalars({'Evaluate/mIoU': metrics['mIoU'], 'Evaluate/Acc': metrics['Acc']}, iteration)
        return metrics

    def dump_rank_state(self):
        """With PADDLE_PSP_DUMP_RANKS=DIR: this rank's final state dict, the names of its trained parameters
        (the rest are BatchNorm statistics, which stay per rank without SyncBatchNorm) and the sample
        indices of each batch it trained on."""
        directory = os.environ.get(DUMP_RANKS_ENV)
        if not directory:
            return
        import json
        os.makedirs(directory, exist_ok=True)
        paddle.save(self.core_model.state_dict(), os.path.join(directory, f'rank{self.rank}.pdparams'))
        trained = [name for name, p in self.core_model.named_parameters() if not p.stop_gradient]
        with open(os.path.join(directory, f'rank{self.rank}.json'), 'w') as file:
            json.dump({'rank': self.rank, 'nranks': self.nranks, 'trained': trained,
                       'batches': self.seen_indices}, file)


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


if __name__ == '__main__':
    from paddle_psp.cli import main as cli_main
    sys.exit(cli_main(['train'] + sys.argv[1:]))
