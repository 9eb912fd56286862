"""``paddleseg val``: evaluate a config's model with a weights file on its val set (mIoU, Acc, Kappa, Dice, per class).

The library function :func:`evaluate` is also what training calls for ``--do_eval``. PaddleSeg 2.8's own
``core.evaluate`` fails on Paddle 3, so this is a re-implementation of its semantics: each image goes
through the val transforms, is inferred (optionally with TTA / sliding window, see
:mod:`paddle_psp.inference.tta`), the logits are mapped back to the original size (VOC's padding cropped
off), and the argmax is scored against the label with pixels labelled 255 ignored.
"""
import contextlib
import json
import os
import time

import numpy as np
import paddle

from paddle_psp.evaluation import metrics
from paddle_psp.evaluation.auc_roc import AucRoc
from paddle_psp.config import load_config
from paddle_psp.inference import tta as infer
from paddle_psp.inference.forward import ForwardOptions, make_forward
from paddle_psp.core.atomic import write_text
from paddle_psp.core.device import use_device
from paddle_psp.core.errors import UserError
from paddle_psp.core.log import log_file, logger
from paddle_psp.core.outputs import require_file, writing
from paddle_psp.core.console import Progress, lines_every
from paddle_psp.data import workers
from paddle_psp.data.datasets import IGNORE_INDEX, class_names, label_problem
from paddle_psp.evaluation.flags import val_parser
from paddle_psp.core.stages import Stages

VAL_LOG = 'val.log'
METRICS_JSON = 'metrics.json'


def evaluate(model, dataset, aug_eval=False, scales=(1.0,), flip_horizontal=False, flip_vertical=False,
             is_slide=False, crop_size=None, stride=None, legacy=False, num_workers=0, print_detail=True):
    """Score ``model`` on ``dataset`` (PaddleSeg ``val`` mode: samples with 'img', 'label', 'trans_info').

    Args:
        model (paddle.nn.Layer|callable): A segmentation model (run in eval mode; its training mode is
            restored afterwards) or a ``forward(batch) -> logits`` callable (see :mod:`infer`).
        dataset (paddle.io.Dataset): The validation dataset; needs ``num_classes``, ``ignore_index``.
        aug_eval (bool, optional): Test-time augmentation with ``scales`` and flips. Default: False.
        scales (float|tuple, optional): TTA scales. Default: (1.0,).
        flip_horizontal (bool, optional): TTA with horizontal flips. Default: False.
        flip_vertical (bool, optional): TTA with vertical flips. Default: False.
        is_slide (bool, optional): Sliding-window inference with ``crop_size`` and ``stride``. Default: False.
        crop_size (tuple, optional): Window (w, h). Default: None.
        stride (tuple, optional): Window stride (w, h). Default: None.
        legacy (bool, optional): PaddleSeg's pre-2023 TTA semantics (see :mod:`infer`). Default: False.
        num_workers (int, optional): Processes reading and transforming images. Default: 0.
        print_detail (bool, optional): Log progress and the metric report. Default: True.

    Returns:
        dict: ``mIoU``, ``Acc``, ``Kappa``, ``Dice`` (floats); ``class_IoU``, ``class_precision``,
        ``class_recall``, ``class_Dice`` (arrays); ``confusion`` ((C, C) int64, rows labels);
        ``class_names``; ``num_images``; ``seconds``.

    Raises:
        UserError: Bad TTA / sliding-window options.
    """
    options = infer.InferOptions.create(aug_eval, scales, flip_horizontal, flip_vertical, is_slide, crop_size,
                                        stride, legacy)
    return evaluate_with_options(model, dataset, options, num_workers, print_detail)


def evaluate_with_options(model, dataset, options, num_workers=0, print_detail=True, auc_roc=False):
    """:func:`evaluate` with the inference settings given as an :class:`infer.InferOptions`.

    With ``auc_roc`` (one process only) the scores also hold ``auc_roc`` (see :mod:`.auc_roc`).
    """
    names = class_names(dataset, dataset.num_classes)
    was_training = isinstance(model, paddle.nn.Layer) and model.training
    forward = infer.layer_forward(model) if isinstance(model, paddle.nn.Layer) else model
    ignore_index = getattr(dataset, 'ignore_index', IGNORE_INDEX)
    auc = AucRoc(dataset.num_classes, ignore_index) if auc_roc else None
    try:
        matrix, count, seconds = _score(forward, dataset, options, num_workers, print_detail, auc)
    finally:
        if was_training:
            model.train()
    scores = metrics.scores_from_confusion(matrix)
    scores.update(class_names=names, num_images=count, seconds=seconds)
    if print_detail:
        metrics.log_report(scores, names, count)
    if auc is not None:
        scores['auc_roc'] = auc.value()
        if print_detail:
            logger.info(f'[EVAL] Auc_roc: {scores["auc_roc"]:.4f}' if scores['auc_roc'] is not None else
                        '[EVAL] Auc_roc: undefined (no class has both positive and negative pixels)')
    return scores


def _score(forward, dataset, options, num_workers, print_detail, auc=None):
    """The confusion matrix of ``dataset``: with several processes (data-parallel training), each scores
    every world-size-th image and the matrices are summed across processes. ``auc`` (an
    :class:`AucRoc`), when given, collects each image's scores."""
    world, rank = paddle.distributed.get_world_size(), paddle.distributed.get_rank()
    if world > 1 and not paddle.distributed.is_initialized():
        paddle.distributed.init_parallel_env()
    indices = list(range(rank, len(dataset), world))
    confusion = metrics.ConfusionMatrix(dataset.num_classes, getattr(dataset, 'ignore_index', IGNORE_INDEX))
    if print_detail:
        logger.info(f'[EVAL] {len(dataset)} images, {options.summary()}')
    start = time.time()
    files = getattr(dataset, 'file_list', None)
    display = (Progress('evaluating', len(indices), every=lines_every(len(indices)), unit='image',
                        log_prefix='[EVAL] ') if print_detail else contextlib.nullcontext())
    with display as progress, contextlib.closing(_samples(dataset, indices, num_workers)) as samples:
        for index, sample in zip(indices, samples):
            label_path = files[index][1] if files else f'label {index}'
            label = np.asarray(sample['label'])
            problem = label_problem(label, confusion.num_classes, confusion.ignore_index, label_path)
            if problem:
                raise UserError(problem)
            logits = infer.infer_logits(forward, sample['img'], sample['trans_info'], options)
            pred = infer.labels_of(logits)
            if label.size != pred.size:
                raise UserError(f'{label_path}: prediction {list(pred.shape)} and label {list(label.shape)} differ '
                                'in size; expected val transforms that record each resize / padding in trans_info')
            confusion.update(pred, label)
            if auc is not None:
                auc.update(logits, label)
            if progress is not None:
                progress.advance()
    matrix = confusion.matrix
    if world > 1:
        total = paddle.to_tensor(matrix)
        paddle.distributed.all_reduce(total)
        matrix = total.numpy()
    return matrix, len(dataset) if world > 1 else len(indices), time.time() - start


def _samples(dataset, indices, num_workers):
    """The samples at ``indices`` (a generator), read in ``num_workers`` background processes when > 0; closing
    the generator (as :func:`_score` does, also when scoring stops early) stops those at once."""
    if num_workers <= 0:
        return (dataset[i] for i in indices)
    subset = paddle.io.Subset(dataset, indices)
    return workers.read(paddle.io.DataLoader(subset, batch_size=1, shuffle=False, num_workers=num_workers,
                                             collate_fn=_only_item, use_shared_memory=False))


def _only_item(batch):
    """DataLoader collate for batches of one: the sample itself, trans_info untouched."""
    return batch[0]


def metrics_json(scores):
    """The scores as JSON-ready values: the summary, per-class lists (null where undefined), the confusion
    matrix (rows labels) and, with ``--auc_roc``, ``auc_roc``."""
    def plain(values):
        return [None if np.isnan(v) else float(v) for v in values]
    out = {key: scores[key] for key in ('mIoU', 'Acc', 'Kappa', 'Dice')}
    if 'auc_roc' in scores:
        out['auc_roc'] = scores['auc_roc']
    out.update(num_images=scores['num_images'], class_names=list(scores['class_names']))
    out.update({key: plain(scores[key]) for key in ('class_IoU', 'class_precision', 'class_recall', 'class_Dice')})
    out['confusion'] = np.asarray(scores['confusion']).tolist()
    return out


def metrics_path(args):
    """Where ``--save_dir`` / ``--output`` put the metrics JSON (checked writable), or None."""
    if args.save_dir is not None and args.output is not None:
        raise UserError('--save_dir and --output: both name where the metrics go; expected one of them')
    if args.save_dir is None and args.output is None:
        return None
    flag, path = ('--output', args.output) if args.output is not None else \
        ('--save_dir', os.path.join(args.save_dir, METRICS_JSON) if args.save_dir else '')
    require_file(path, 'the metrics JSON file of paddleseg val', name=flag)
    return path


def main(argv):
    """``paddleseg val``: logs the metric report, writes it as JSON with ``--save_dir`` / ``--output`` (and, with
    ``--save_dir``, the log lines to ``val.log`` once done), and returns the scores (see :func:`evaluate`)."""
    args = val_parser().parse_args(argv)
    log = log_file(os.path.join(args.save_dir, VAL_LOG), when_done=True) if args.save_dir else contextlib.nullcontext()
    with log:
        return _run(args)


def _run(args):
    """``paddleseg val`` with parsed flags."""
    stages = Stages(enabled=args.profile)
    stages.mark('imports')
    output = metrics_path(args)
    use_device(args.device)
    cfg = load_config(args.config, opts=args.opts)
    options = infer.options_from_args(args, cfg.test_config)
    dataset = cfg.val_dataset
    stages.mark('config and dataset')
    forward = make_forward(cfg, args.model_path, ForwardOptions.from_args(args, options.input_shapes()), stages)
    scores = evaluate_with_options(forward, dataset, options, args.num_workers, auc_roc=args.auc_roc)
    if args.profile:
        logger.info(f'[EVAL] start-up: {stages.summary()}')
    if output:
        with writing(output):
            write_text(output, json.dumps(metrics_json(scores), indent=1) + '\n')
        logger.info(f'[EVAL] metrics written to {output}')
    return scores
