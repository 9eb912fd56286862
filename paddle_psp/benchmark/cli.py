"""``paddleseg benchmark``: the targets its arguments select, and the command itself."""
import os

from paddle_psp.benchmark.plan import Settings, weights_target, zoo_targets
from paddle_psp.benchmark.report import RESULTS_JSON, RESULTS_MARKDOWN
from paddle_psp.benchmark.runner import run
from paddle_psp.core.device import use_device
from paddle_psp.core.errors import UserError
from paddle_psp.benchmark.flags import benchmark_parser
from paddle_psp.core.stages import Stages


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
        return [weights_target(args.config, args.model_path, args.name)]
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
    args = benchmark_parser().parse_args(argv)
    stages = Stages(enabled=args.profile)
    stages.mark('imports')
    use_device(args.device)
    targets = targets_from_args(args)
    settings = Settings(scales=tuple(args.scales), legacy=args.legacy_tta, is_slide=args.is_slide,
                        crop_size=args.crop_size, stride=args.stride, limit=args.limit,
                        data_root=args.data_root, opts=tuple(args.opts), dygraph=args.dygraph,
                        log_every=args.log_every, quantize=args.quantize, calib_images=args.calib_images)
    results = run(targets, settings, args.save_dir, resume=args.resume, overwrite=args.overwrite, stages=stages)
    print(results['markdown'])
    written = [os.path.join(args.save_dir, name) for name in (RESULTS_JSON, RESULTS_MARKDOWN)]
    print(f'\nwrote {written[0]} and {written[1]}')
    return 0
