"""The argument parsers of ``paddleseg train``, ``val``, ``predict`` and ``export``, and the flags verbs share.

Standard library only, so that ``paddleseg VERB --help`` and a mistyped flag answer without importing
Paddle. PaddleSeg 2.8's ``tools/*.py`` flags keep their names, defaults and meanings; a value this build
cannot honour (``--device npu``) is refused by the parser in one line naming what to use instead. The
flag-by-flag comparison with PaddleSeg is in docs/flags.md.
"""
import argparse

DEVICES = ('cpu', 'gpu')  # what this build runs on
PADDLESEG_DEVICES = ('cpu', 'gpu', 'xpu', 'npu', 'mlu')  # what PaddleSeg's --device accepts
DATA_FORMATS = ('NCHW', 'NHWC')
OUTPUT_OPS = ('argmax', 'softmax', 'none')

# Where the fast path keeps its exported models (paddle_psp/inference/cache.py; stated here without importing it,
# so that --help stays light; tests/test_cache.py checks that the two agree).
CACHE_HELP = ('Its exports are cached in $PADDLE_PSP_CACHE (default ~/.cache/paddle_psp/inference), at most '
              '$PADDLE_PSP_CACHE_SIZE (default 4G; K, M, G, T), least recently used first out')


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``paddleseg VERB: error: ...``, exit status 2 (no usage)."""

    def error(self, message):
        self.exit(2, f'{self.prog}: error: {" ".join(message.split())}; see {self.prog} --help\n')


class _Supported(argparse.Action):
    """Stores a value of ``choices``; one that is not ``supported`` is refused with ``reason`` (one line)."""

    def __init__(self, option_strings, dest, supported=(), reason='', **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.supported, self.reason = supported, reason

    def __call__(self, parser, namespace, value, option_string=None):
        if value not in self.supported:
            parser.error(f'{option_string} {value}: {self.reason}')
        setattr(namespace, self.dest, value)


def _bool(text):
    """PaddleSeg's ``type=bool`` flags as they are meant: True/False, yes/no, 1/0 (any case)."""
    lowered = text.lower()
    if lowered in ('true', 'yes', '1'):
        return True
    if lowered in ('false', 'no', '0'):
        return False
    raise argparse.ArgumentTypeError(f'expected True or False, got {text!r}')


def add_config_arguments(parser, config_help):
    """Add ``--config`` (help ``config_help``) and ``--model_path`` to ``parser``, both required."""
    parser.add_argument('--config', required=True, help=config_help)
    parser.add_argument('--model_path', required=True,
                        help='checkpoint: a model.pdparams file, a folder holding one, a URL or a zoo name')


def add_device_argument(parser):
    """Add PaddleSeg's ``--device``: cpu or gpu; xpu, npu and mlu are refused in one line."""
    parser.add_argument('--device', choices=PADDLESEG_DEVICES, default=None, action=_Supported,
                        supported=DEVICES, reason='this build supports cpu, gpu; expected --device cpu (or gpu '
                        'with paddlepaddle-gpu), or PaddleSeg itself for this device',
                        help='cpu or gpu (default: gpu when Paddle has CUDA and a GPU is visible, else cpu, as in '
                             'PaddleSeg)')


def add_data_format_argument(parser):
    """Add PaddleSeg's ``--data_format``: NCHW; NHWC is refused in one line."""
    parser.add_argument('--data_format', choices=DATA_FORMATS, default='NCHW', action=_Supported,
                        supported=('NCHW',), reason='the models here compute in NCHW (the fast CPU path lets '
                        'oneDNN choose its own memory layout); expected NCHW', help='NCHW (default)')


def add_opts_argument(parser):
    """Add ``--opts KEY=VALUE ...`` (config overrides)."""
    parser.add_argument('--opts', nargs='+', default=[], metavar='KEY=VALUE',
                        help='config overrides, e.g. val_dataset.dataset_root=data/cityscapes')


def add_profile_argument(parser):
    """Add ``--profile``: log where the start-up time goes."""
    parser.add_argument('--profile', action='store_true',
                        help='log the start-up breakdown (imports, config, model, checkpoint, predictor, first '
                             'image) from process start')


def add_tta_arguments(parser, aug_flags=('--aug_eval',)):
    """Add PaddleSeg's TTA and sliding-window flags (and ``--legacy_tta``, ``--dygraph``) to ``parser``.

    Args:
        parser (argparse.ArgumentParser): The verb's parser.
        aug_flags (tuple[str], optional): Names of the flag that turns TTA on. Default: ('--aug_eval',).
    """
    group = parser.add_argument_group('test-time augmentation and sliding window')
    group.add_argument(*aug_flags, dest='aug', action='store_true', default=None,
                       help='multi-scale / flip test-time augmentation (with --scales, --flip_*)')
    group.add_argument('--scales', nargs='+', type=float, default=None, metavar='S',
                       help='TTA scales, e.g. 0.75 1.0 1.25 (default 1.0)')
    group.add_argument('--flip_horizontal', action='store_true', default=None, help='TTA: add flipped inputs')
    group.add_argument('--flip_vertical', action='store_true', default=None, help='TTA: add upside-down inputs')
    group.add_argument('--legacy_tta', action='store_true', default=None,
                       help='pre-2023 PaddleSeg TTA (produced the published ms+flip column): each scale '
                            'resizes the previous scale\'s image, softmax probabilities are averaged')
    group.add_argument('--is_slide', action='store_true', default=None, help='sliding-window inference')
    group.add_argument('--crop_size', nargs=2, type=int, default=None, metavar=('W', 'H'),
                       help='sliding-window size')
    group.add_argument('--stride', nargs=2, type=int, default=None, metavar=('W', 'H'),
                       help='sliding-window stride')
    parser.add_argument('--dygraph', action='store_true',
                        help='run the dygraph model instead of the fast CPU path (Paddle Inference + oneDNN). '
                        + CACHE_HELP)


def val_parser():
    """The ``paddleseg val`` argument parser."""
    parser = OneLineParser(
        prog='paddleseg val', description='Evaluate a checkpoint on the validation set of a config: mIoU, Acc, '
        'Kappa, Dice and per-class IoU / precision / recall (pixels labelled 255 ignored).')
    add_config_arguments(parser, 'YAML config (val_dataset and model)')
    parser.add_argument('--num_workers', type=int, default=0, help='processes reading images (default 0)')
    add_device_argument(parser)
    add_data_format_argument(parser)
    parser.add_argument('--auc_roc', type=_bool, nargs='?', const=True, default=False, metavar='True|False',
                        help='also compute the area under the ROC curve of the softmax scores, as PaddleSeg '
                             'does (keeps every pixel\'s scores in memory)')
    output = parser.add_argument_group('metrics as JSON (mIoU, Acc, Kappa, Dice, per-class scores)')
    output.add_argument('--save_dir', help='write SAVE_DIR/metrics.json')
    output.add_argument('--output', metavar='FILE', help='write the metrics to FILE')
    add_profile_argument(parser)
    add_opts_argument(parser)
    add_tta_arguments(parser, ('--aug_eval',))
    return parser


def predict_parser():
    """The ``paddleseg predict`` argument parser."""
    parser = OneLineParser(
        prog='paddleseg predict', description='Predict images and write pseudo_color_prediction/ (palette '
        'PNGs) and added_prediction/ (overlays) under --save_dir.')
    add_config_arguments(parser, 'YAML config (model and val_dataset transforms)')
    parser.add_argument('--image_path', required=True, help='an image, a folder of images or a list file')
    parser.add_argument('--save_dir', default='./output/result', help='output folder (default ./output/result)')
    add_device_argument(parser)
    parser.add_argument('--custom_color', nargs='+', type=int, default=None, metavar='V',
                        help='colours replacing the palette\'s first ones: R G B for class 0, then class 1, ...')
    add_profile_argument(parser)
    add_opts_argument(parser)
    add_tta_arguments(parser, ('--aug_pred', '--aug_eval'))
    return parser


def export_parser():
    """The ``paddleseg export`` argument parser."""
    parser = OneLineParser(
        prog='paddleseg export', description='Export a Paddle Inference model (model.pdmodel, model.pdiparams) '
        'and deploy.yaml for the model of a config and a checkpoint.')
    add_config_arguments(parser, 'YAML config (model and val_dataset transforms)')
    parser.add_argument('--save_dir', default='./output/inference_model',
                        help='output folder (default ./output/inference_model)')
    parser.add_argument('--input_shape', nargs='+', type=int, default=None, metavar='N C H W',
                        help='fixed input shape N 3 H W, -1 for any size (default -1 3 -1 -1)')
    parser.add_argument('--output_op', choices=OUTPUT_OPS, default='argmax',
                        help='appended to the logits: argmax (int32 class ids, default), softmax or none')
    add_device_argument(parser)
    add_opts_argument(parser)
    return parser


# verb -> its parser, for the verbs whose parser lives here (the command line checks flags with it before
# importing the verb's module)
def train_parser():
    """The ``paddleseg train`` argument parser (PaddleSeg's tools/train.py flags, plus --device)."""
    parser = OneLineParser(prog='paddleseg train', description='Iteration-based training with '
                                     "PaddleSeg's flags, exact resume and data parallelism.")
    parser.add_argument('--config', required=True, help='YAML config (PaddleSeg format, _base_ allowed)')
    parser.add_argument('--save_dir', default='./output', help='checkpoints and VisualDL logs (./output)')
    parser.add_argument('--iters', type=int, help='total iterations (overrides the config)')
    parser.add_argument('--batch_size', type=int, help='images per device (overrides the config)')
    parser.add_argument('--learning_rate', type=float, help='base learning rate (overrides the config)')
    parser.add_argument('--do_eval', action='store_true', help='evaluate at every save; keep best_model/')
    parser.add_argument('--use_vdl', action='store_true', help='write VisualDL scalars to save_dir')
    parser.add_argument('--resume_model', help='continue from a checkpoint directory save_dir/iter_N; auto: '
                        'from the newest complete one in --save_dir, or fresh when there is none')
    parser.add_argument('--save_interval', type=int, default=1000, help='iterations between checkpoints (1000)')
    parser.add_argument('--log_iters', type=int, default=10, help='iterations between log lines (10)')
    parser.add_argument('--keep_checkpoint_max', type=int, default=5, help='newest checkpoints kept (5)')
    parser.add_argument('--num_workers', type=int, default=0, help='data loading processes (0)')
    parser.add_argument('--seed', type=int,
                        help='fixes initial weights, shuffling, augmentation and dropout (default: the resumed '
                             'run\'s, else a random one, logged and saved in every checkpoint)')
    add_device_argument(parser)
    parser.add_argument('--precision', choices=['fp32', 'fp16'], default='fp32', help='fp16: AMP, GPU only')
    parser.add_argument('--amp_level', choices=['O1', 'O2'], default='O1', help='AMP level with fp16 (O1)')
    parser.add_argument('--use_ema', action='store_true',
                        help='also train an exponential moving average of the weights (decay 0.999), evaluate '
                             'it with --do_eval and keep ema_best_model/')
    parser.add_argument('--repeats', type=int, default=1, help='passes over the train set per epoch (1)')
    parser.add_argument('--data_format', choices=['NCHW', 'NHWC'], default='NCHW',
                        help='tensor layout of the model and loss (NCHW)')
    parser.add_argument('--profiler_options', metavar='"KEY=VALUE;..."',
                        help='profile iterations with paddle.profiler, PaddleSeg\'s option string, e.g. '
                             '"batch_range=[10,20];profile_path=/tmp/profile" (see engine/profiler.py)')
    parser.add_argument('--opts', nargs='+', default=[], metavar='KEY=VALUE',
                        help='override config keys, e.g. train_dataset.dataset_root=data/cityscapes')
    return parser




PARSERS = {'train': train_parser, 'val': val_parser, 'predict': predict_parser, 'export': export_parser}
