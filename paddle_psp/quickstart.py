"""``paddleseg quickstart``: the built-in demo, end to end on a CPU in a few minutes, no network needed.

It generates a small synthetic dataset in Cityscapes layout, trains PSPNet on it and benchmarks the result.
The steps and the outputs are described once, in the verb's help (``paddleseg quickstart --help``, text in
:data:`paddle_psp.quickstart_flags.QUICKSTART_STEPS`).
"""
import json
import os
import shutil
import time

import numpy as np
from PIL import Image

from paddle_psp import benchmark
from paddle_psp.core import atomic
from paddle_psp.core.errors import UserError
from paddle_psp.data.synthetic import CLASSES, make_cityscapes_like
from paddle_psp.engine import train
from paddle_psp.evaluation import metrics
from paddle_psp.config import load_config
from paddle_psp.weights import shipped_configs
from paddle_psp.quickstart_flags import quickstart_parser

CONFIG_NAME = 'quickstart'
DATASET = {'num_train': 32, 'num_val': 8, 'size': (256, 128), 'seed': 0}
TARGET_NAME = 'quickstart'
OUTPUTS = ('train', 'benchmark', 'summary.json')


def main(argv=None):
    """``paddleseg quickstart``: returns 0 after printing the table and the chance level."""
    args = quickstart_parser().parse_args(argv)
    if args.iters is not None and args.iters < 1:
        raise UserError(f'--iters {args.iters}: expected a positive number of iterations')
    config = find_config()
    prepare_save_dir(args.save_dir, args.overwrite)
    timings = {}
    start = time.perf_counter()
    root = make_cityscapes_like(os.path.join(args.save_dir, 'data'), **DATASET)
    timings['data_seconds'] = time.perf_counter() - start
    opts = [f'train_dataset.dataset_root={root}', f'val_dataset.dataset_root={root}']
    cfg = load_config(config, opts=opts, iters=args.iters)
    weights_file, timings['train_seconds'] = train_model(config, cfg.iters, args.save_dir, opts)
    started = time.perf_counter()
    settings = benchmark.Settings(opts=tuple(opts + [f'iters={cfg.iters}']), dygraph=args.dygraph, log_every=2)
    results = benchmark.run([benchmark.weights_target(config, weights_file, TARGET_NAME)], settings,
                            os.path.join(args.save_dir, 'benchmark'))
    timings['benchmark_seconds'] = time.perf_counter() - started
    timings['total_seconds'] = time.perf_counter() - start
    chance = chance_level(cfg.train_dataset, cfg.val_dataset)
    summary = summarize(results, chance, cfg, timings, args.save_dir)
    atomic.write_text(os.path.join(args.save_dir, 'summary.json'), json.dumps(summary, indent=1) + '\n')
    print(report(results['markdown'], summary))
    return 0


def find_config():
    """The quickstart config shipped with the package."""
    try:
        return shipped_configs.resolve(CONFIG_NAME)
    except ValueError as err:
        raise UserError(str(err)) from None


def prepare_save_dir(save_dir, overwrite):
    """Check ``save_dir`` is writable; refuse earlier results unless ``overwrite`` (which removes them).

    The generated dataset is kept: it is deterministic and regenerated only when its spec changes.
    """
    benchmark.ensure_writable_dir(save_dir)
    earlier = [os.path.join(save_dir, name) for name in OUTPUTS if os.path.exists(os.path.join(save_dir, name))]
    if earlier and not overwrite:
        raise UserError(f'{earlier[0]}: exists (an earlier quickstart); expected --overwrite to replace it, or '
                        'another --save_dir')
    for path in earlier:
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def train_model(config, iters, save_dir, opts):
    """Run ``paddleseg train`` (with VisualDL) and return (the weights file of its final checkpoint, seconds)."""
    train_dir = os.path.join(save_dir, 'train')
    start = time.perf_counter()
    train.main(['--config', config, '--save_dir', train_dir, '--iters', str(iters), '--use_vdl',
                '--log_iters', '10', '--save_interval', str(iters), '--keep_checkpoint_max', '1', '--seed', '0',
                '--opts', *opts])
    return os.path.join(train_dir, f'iter_{iters}', 'model.pdparams'), time.perf_counter() - start


def chance_level(train_dataset, val_dataset):
    """What guessing scores on the val split.

    Returns:
        dict: ``majority_class`` (the most frequent labelled class of the train split), ``majority_mIoU``
        (mIoU on val when predicting it everywhere), ``present_classes`` (classes labelled in val) and
        ``uniform_mIoU`` (1 / present_classes).
    """
    num_classes, ignore = train_dataset.num_classes, train_dataset.ignore_index
    counts = sum(np.bincount(_valid_pixels(label, num_classes, ignore), minlength=num_classes)
                 for _, label in train_dataset.file_list)
    majority = int(np.argmax(counts))
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for _, label in val_dataset.file_list:
        pixels = _valid_pixels(label, num_classes, ignore)
        confusion[:, majority] += np.bincount(pixels, minlength=num_classes)
    present = int((confusion.sum(axis=1) > 0).sum())
    return {'majority_class': CLASSES.get(majority, (str(majority),))[0],
            'majority_mIoU': metrics.scores_from_confusion(confusion)['mIoU'],
            'present_classes': present, 'uniform_mIoU': 1.0 / present}


def _valid_pixels(label_path, num_classes, ignore):
    label = np.asarray(Image.open(label_path)).reshape(-1).astype(np.int64)
    return label[(label != ignore) & (label < num_classes)]


def summarize(results, chance, cfg, timings, save_dir):
    """The facts the quickstart reports (also written to summary.json)."""
    entry = results['entries'][0]
    model_cfg = cfg.dic['model']
    return {
        'model': f'{entry["model"]} {entry["backbone"]}', 'iters': cfg.iters, 'batch_size': cfg.batch_size,
        'crop': entry['resolution'], 'pp_out_channels': model_cfg.get('pp_out_channels'),
        'imagenet_weights': bool(model_cfg['backbone'].get('pretrained')),
        'val_images': entry['num_images'],
        'mIoU': {column: entry['columns'][column]['mIoU'] for column in benchmark.COLUMNS},
        'chance': chance, 'timings': timings, 'visualdl_logdir': os.path.join(save_dir, 'train'),
        'benchmark_json': os.path.join(save_dir, 'benchmark', benchmark.RESULTS_JSON),
    }


def report(table, summary):
    """The text printed at the end: the table, the score against chance, what was shrunk, timings."""
    chance = summary['chance']
    timings = summary['timings']
    miou = summary['mIoU']['miou']
    return '\n'.join([
        '', table, '',
        f'quickstart: {summary["model"]} trained {summary["iters"]} iterations (batch {summary["batch_size"]}, '
        f'{summary["crop"]} crops) from random weights: no ImageNet weights (no network needed), pyramid head '
        f'{summary["pp_out_channels"]} channels instead of 1024, on a small generated dataset',
        f'mIoU {miou * 100:.2f}% on {summary["val_images"]} val images vs chance '
        f'{chance["majority_mIoU"] * 100:.2f}% (predicting {chance["majority_class"]!r}, the most frequent '
        f'training class, everywhere; 1/{chance["present_classes"]} classes present = '
        f'{chance["uniform_mIoU"] * 100:.2f}%)',
        f'time: data {timings["data_seconds"]:.0f} s, training {timings["train_seconds"]:.0f} s, benchmark '
        f'{timings["benchmark_seconds"]:.0f} s, total {timings["total_seconds"]:.0f} s',
        f'curves: visualdl --logdir {summary["visualdl_logdir"]}   results: {summary["benchmark_json"]}',
    ])
