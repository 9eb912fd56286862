"""``paddleseg benchmark``: its arguments, the targets they select, and the command itself."""
import argparse
import os

from paddle_psp.benchmark.plan import DEFAULT_SCALES, Settings, checkpoint_target, zoo_targets
from paddle_psp.benchmark.report import RESULTS_JSON, RESULTS_MARKDOWN
from paddle_psp.benchmark.runner import DEFAULT_SAVE_DIR, run
from paddle_psp.core.device import use_device
from paddle_psp.core.errors import UserError
from paddle_psp_cli.parsers import CACHE_HELP, OneLineParser, add_device_argument


def build_parser():
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
    what.add_argument('--config', help='YAML config (its val_dataset and model)')
    what.add_argument('--model_path',
                      help='checkpoint: a .pdparams file, a folder holding one, a URL or a zoo name')
    what.add_argument('--name', help='label of a --config run (default: the config file name)')
    data = parser.add_argument_group('data and output')
    data.add_argument('--data_root', help='replaces val_dataset.dataset_root of the config(s)')
    data.add_argument('--limit', type=int, help='score only the first N val images')
    data.add_argument('--opts', nargs='+', default=[], metavar='KEY=VALUE', help='config overrides')
    data.add_argument('--save_dir', default=DEFAULT_SAVE_DIR, help=f'output directory ({DEFAULT_SAVE_DIR})')
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
    return parser


def targets_from_args(args):
    """The targets the flags select."""
    filters = {'model': args.model, 'dataset': args.dataset, 'backbone': args.backbone}
    if args.config or args.model_path:
        if not (args.config and args.model_path):
            raise UserError('--config and --model_path: expected both (or --zoo NAME|all instead)')
        used = [f'--{k}' for k, v in filters.items() if v] + (['--zoo'] if args.zoo else [])
        if used:
            raise UserError(f'{used[0]}: selects zoo entries; expected either --zoo and its filters, or '
                            '--config and --model_path')
        return [checkpoint_target(args.config, args.model_path, args.name)]
    if args.name:
        raise UserError('--name: labels a --config run; zoo entries keep their names')
    if not args.zoo and not any(filters.values()):
        raise UserError('nothing to benchmark; expected --zoo NAME|all (optionally with --model, --dataset, '
                        '--backbone) or --config with --model_path')
    targets = zoo_targets(args.zoo, **filters)
    datasets = sorted({t.entry['dataset'] for t in targets})
    if args.data_root and len(datasets) > 1:
        raise UserError(f'--data_root: the selected entries use {len(datasets)} datasets '
                        f'({", ".join(datasets)}); expected --dataset to pick one')
    return targets


def main(argv=None):
    """``paddleseg benchmark``: prints the table; returns 0."""
    args = build_parser().parse_args(argv)
    use_device(args.device)
    targets = targets_from_args(args)
    settings = Settings(scales=tuple(args.scales), legacy=args.legacy_tta, is_slide=args.is_slide,
                        crop_size=args.crop_size, stride=args.stride, limit=args.limit,
                        data_root=args.data_root, opts=tuple(args.opts), dygraph=args.dygraph,
                        log_every=args.log_every)
    results = run(targets, settings, args.save_dir, resume=args.resume, overwrite=args.overwrite)
    print(results['markdown'])
    written = [os.path.join(args.save_dir, name) for name in (RESULTS_JSON, RESULTS_MARKDOWN)]
    print(f'\nwrote {written[0]} and {written[1]}')
    return 0
