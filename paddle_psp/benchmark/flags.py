"""The flags of ``paddleseg benchmark`` and ``paddleseg env`` (:mod:`paddle_psp.benchmark.environment`).
Standard library only (see :mod:`paddle_psp.core.flags`)."""
import argparse
import os

from paddle_psp.core.flags import OneLineParser, add_device_argument, add_profile_argument
from paddle_psp.inference.flags import CACHE_HELP, DEFAULT_SCALES, add_quantize_arguments
from paddle_psp.weights.flags import CONFIG_NAME_HELP
from paddle_psp.weights.shipped_configs import config_argument

BENCHMARK_SAVE_DIR = os.path.join('.', 'output', 'benchmark')


def benchmark_parser():
    """The ``paddleseg benchmark`` argument parser."""
    parser = OneLineParser(
        prog='paddleseg benchmark', formatter_class=argparse.RawDescriptionHelpFormatter,
        description='Fill the mIoU / mIoU (flip) / mIoU (ms+flip) table for zoo entries or a checkpoint, with '
                    'one set of forward passes per image.',
        epilog='examples:\n  paddleseg benchmark --zoo all --dataset cityscapes --data_root data/cityscapes\n'
               '  paddleseg benchmark --config my.yml --model_path output/iter_1000/model.pdparams --limit 20')
    add_device_argument(parser)
    what = parser.add_argument_group('what to benchmark (zoo entries, or a config and a checkpoint)')
    what.add_argument('--zoo', metavar='NAME|all', help='a zoo entry name, or all (narrowed by the filters)')
    what.add_argument('--model', help='zoo filter: PSPNet or DeepLabV3')
    what.add_argument('--dataset', help='zoo filter: cityscapes or voc12aug')
    what.add_argument('--backbone', help='zoo filter: ResNet50_OS8 or ResNet101_OS8')
    what.add_argument('--config', type=config_argument,
                      help='YAML config (its val_dataset and model)' + CONFIG_NAME_HELP)
    what.add_argument('--model_path',
                      help='checkpoint: a .pdparams file, a folder holding one, a URL or a zoo name')
    what.add_argument('--name', help='label of a --config run (default: the config file name)')
    data = parser.add_argument_group('data and output')
    data.add_argument('--data_root', help='replaces val_dataset.dataset_root of the config(s)')
    data.add_argument('--limit', type=int, help='score only the first N val images')
    data.add_argument('--opts', nargs='+', default=[], metavar='KEY=VALUE', help='config overrides')
    data.add_argument('--save_dir', default=BENCHMARK_SAVE_DIR, help=f'output directory ({BENCHMARK_SAVE_DIR})')
    data.add_argument('--resume', action='store_true', help='continue an interrupted run in --save_dir')
    data.add_argument('--overwrite', action='store_true', help='replace earlier results in --save_dir')
    data.add_argument('--log_every', type=int, default=10,
                      help='without a terminal: a progress line every N images (10)')
    tta = parser.add_argument_group('inference')
    tta.add_argument('--scales', nargs='+', type=float, default=list(DEFAULT_SCALES), metavar='S',
                     help='scales of the ms+flip column (0.75 1.0 1.25)')
    tta.add_argument('--legacy_tta', action='store_true',
                     help='pre-2023 PaddleSeg TTA (produced the published ms+flip column)')
    tta.add_argument('--is_slide', action='store_true', default=None, help='sliding-window inference')
    tta.add_argument('--crop_size', nargs=2, type=int, metavar=('W', 'H'), help='sliding-window size')
    tta.add_argument('--stride', nargs=2, type=int, metavar=('W', 'H'), help='sliding-window stride')
    tta.add_argument('--dygraph', action='store_true',
                     help='run the dygraph model instead of the fast CPU path. ' + CACHE_HELP)
    add_quantize_arguments(tta)
    add_profile_argument(parser)
    return parser


def env_parser():
    """The ``paddleseg env`` argument parser."""
    return OneLineParser(prog='paddleseg env', description='Print what a bug report needs: paddle-psp, Paddle, '
                         'PaddleSeg, Python, CUDA / cuDNN and GPU if any, the CPU and its instruction sets, '
                         'and the CPU tuning paddleseg applies on this machine.')
