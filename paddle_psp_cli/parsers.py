"""The argument parsers of every ``paddleseg`` verb, and the flags verbs share.

Standard library only, so that ``paddleseg VERB --help`` and a mistyped flag answer without importing
Paddle. PaddleSeg 2.8's ``tools/*.py`` flags keep their names, defaults and meanings; a value this build
cannot honour (``--device npu``) is refused by the parser in one line naming what to use instead. The
flag-by-flag comparison with PaddleSeg is in docs/flags.md.
"""
import argparse
import os

from paddle_psp_cli.configs import config_argument

DEVICES = ('cpu', 'gpu')  # what this build runs on
PADDLESEG_DEVICES = ('cpu', 'gpu', 'xpu', 'npu', 'mlu')  # what PaddleSeg's --device accepts
DATA_FORMATS = ('NCHW', 'NHWC')
OUTPUT_OPS = ('argmax', 'softmax', 'none')
SUBMISSIONS = ('cityscapes', 'voc')  # test-server formats of predict --submission (inference/submission.py)

# Defaults of the application verbs, stated here (and imported by their modules) so that --help stays light.
DEFAULT_SCALES = (0.75, 1.0, 1.25)  # the ms+flip column's scales (paddle_psp/benchmark/plan.py)
BENCHMARK_SAVE_DIR = os.path.join('.', 'output', 'benchmark')
QUICKSTART_SAVE_DIR = os.path.join('.', 'quickstart_output')
MIRROR_ENV = 'PADDLE_PSP_MIRROR'  # environment variable: a mirror of https://bj.bcebos.com (weights/hub.py)
QUICKSTART_DESCRIPTION = 'The built-in demo, end to end on a CPU in a few minutes, no network needed.'
QUICKSTART_STEPS = """
1. Generates a small deterministic street-scene dataset in Cityscapes layout.
2. Trains PSPNet on a dilated ResNet50-vd (output stride 8) as paddleseg train does, with VisualDL logs,
   from random weights (no ImageNet weights: they would need a download) with a 64-channel pyramid head,
   small crops and a short schedule (the config named quickstart).
3. Benchmarks the trained model as paddleseg benchmark does (mIoU, flip, ms+flip from one pass per image)
   and prints the table with the chance level next to it.

Everything goes to --save_dir (./quickstart_output): data/, train/ (checkpoints, VisualDL records),
benchmark/ (benchmark.json, benchmark.md) and summary.json.
"""

CONFIG_NAME_HELP = ', or the name of a shipped config (paddleseg models lists them)'

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
    parser.add_argument('--config', required=True, type=config_argument, help=config_help + CONFIG_NAME_HELP)
    parser.add_argument('--model_path', required=True,
                        help='checkpoint: a model.pdparams file, a folder holding one, a URL or a zoo name')


def add_device_argument(parser):
    """Add PaddleSeg's ``--device``: cpu or gpu; xpu, npu and mlu are refused in one line."""
    parser.add_argument('--device', choices=PADDLESEG_DEVICES, default=None, action=_Supported,
                        metavar='{' + ','.join(DEVICES) + '}',
                        supported=DEVICES, reason='this build supports cpu, gpu; expected --device cpu (or gpu '
                        'with paddlepaddle-gpu), or PaddleSeg itself for this device',
                        help='cpu or gpu (default: gpu when Paddle has CUDA and a GPU is visible, else cpu, as in '
                             'PaddleSeg)')


def add_data_format_argument(parser):
    """Add PaddleSeg's ``--data_format``: NCHW; NHWC is refused in one line."""
    parser.add_argument('--data_format', choices=DATA_FORMATS, default='NCHW', action=_Supported, metavar='NCHW',
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


def add_quantize_arguments(parser):
    """Add ``--quantize`` and ``--calib_images`` (int8 post-training quantization) to ``parser``."""
    parser.add_argument('--quantize', choices=('none', 'int8'), default='none',
                        help='int8: post-training quantization (Paddle\'s PTQ, run on oneDNN int8 kernels), '
                        'calibrated on the config\'s train_dataset; faster on CPUs with AMX / VNNI, not exact '
                        '(default none: fp32)')
    parser.add_argument('--calib_images', type=int, default=32, metavar='N',
                        help='train_dataset images calibrating --quantize int8 (default 32)')


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
    add_quantize_arguments(parser)


def val_parser():
    """The ``paddleseg val`` argument parser."""
    parser = OneLineParser(
        prog='paddleseg val', description='Evaluate a checkpoint on the validation set of a config: mIoU, Acc, '
        'Kappa, Dice and per-class IoU / precision / recall. Pixels labelled with the dataset\'s ignore index '
        '(its ignore_index: 255 for Cityscapes and VOC) are left out.')
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
    parser.add_argument('--submission', choices=SUBMISSIONS, default=None,
                        help='write the test server\'s files instead: cityscapes (label-id PNGs per city, zipped) '
                        'or voc (comp6_test_cls palette PNGs, zipped); see docs/python_api.md')
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
    add_quantize_arguments(parser)
    add_device_argument(parser)
    add_opts_argument(parser)
    return parser


def train_parser():
    """The ``paddleseg train`` argument parser (PaddleSeg's tools/train.py flags, plus --device)."""
    parser = OneLineParser(prog='paddleseg train', description='Iteration-based training with '
                                     "PaddleSeg's flags, exact resume and data parallelism.")
    parser.add_argument('--config', required=True, type=config_argument,
                        help='YAML config (PaddleSeg format, _base_ allowed)' + CONFIG_NAME_HELP)
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


def download_parser():
    """The ``paddleseg download`` argument parser."""
    parser = OneLineParser(
        prog='paddleseg download',
        description='Download, verify and cache a checkpoint (zoo name or URL); print its local path.',
        epilog=f'Cache: $SEG_HOME/pretrained_model (SEG_HOME defaults to ~/.paddleseg). '
               f'{MIRROR_ENV}=BASE fetches https://bj.bcebos.com/... from BASE/... instead.')
    parser.add_argument('spec', metavar='NAME|URL',
                        help='zoo config name, http(s) or file:// URL, or a local path')
    parser.add_argument('--sha256', metavar='HEX', help='pinned SHA-256 of the file (or archive)')
    parser.add_argument('--force', action='store_true', help='download again even if cached')
    return parser


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'{text}: expected an integer >= 1')
    return value


def prepare_parser():
    """The ``paddleseg prepare`` argument parser with one sub-command per dataset."""
    parser = OneLineParser(
        prog='paddleseg prepare',
        description='Convert a dataset from its official format into what PaddleSeg\'s datasets read. '
                    'Safe to re-run: up-to-date outputs are skipped, every file is written atomically.')
    datasets = parser.add_subparsers(dest='dataset', required=True, metavar='DATASET')
    city = datasets.add_parser(
        'cityscapes', help='gtFine *_labelIds.png -> *_labelTrainIds.png, plus ROOT/{train,val,test}.txt',
        description='Write gtFine/SPLIT/CITY/*_gtFine_labelTrainIds.png beside each *_gtFine_labelIds.png '
                    '(official cityscapesscripts label table) and ROOT/SPLIT.txt lists.')
    city.add_argument('--root', required=True,
                      help='Cityscapes root holding leftImg8bit/ and gtFine/ (from leftImg8bit_trainvaltest.zip '
                           'and gtFine_trainvaltest.zip)')
    voc = datasets.add_parser(
        'voc12aug', help='VOC 2012 + SBD -> VOC2012/SegmentationClassAug and ImageSets/Segmentation/aug.txt',
        description='Write VOC2012/SegmentationClassAug/*.png (VOC SegmentationClass without palette, SBD '
                    'cls/*.mat for the other images) and ImageSets/Segmentation/{aug,trainaug}.txt, as '
                    'PaddleSeg\'s PascalVOC(mode="trainaug") expects.')
    voc.add_argument('--voc', required=True, help='the VOCdevkit folder (holding VOC2012/)')
    voc.add_argument('--sbd', required=True, help="SBD's benchmark_RELEASE folder or its dataset/ subfolder")
    for sub in (city, voc):
        sub.add_argument('--workers', type=_positive_int, default=2, help='conversion processes (default: 2)')
        sub.add_argument('--force', action='store_true', help='convert even outputs that are up to date')
    return parser


def quickstart_parser():
    """The ``paddleseg quickstart`` argument parser."""
    parser = OneLineParser(prog='paddleseg quickstart', description=QUICKSTART_DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter, epilog=QUICKSTART_STEPS)
    parser.add_argument('--save_dir', default=QUICKSTART_SAVE_DIR,
                        help=f'output directory ({QUICKSTART_SAVE_DIR})')
    parser.add_argument('--iters', type=int, help='training iterations (default: the quickstart config\'s)')
    parser.add_argument('--overwrite', action='store_true', help='replace the results of an earlier quickstart')
    parser.add_argument('--dygraph', action='store_true',
                        help='benchmark the dygraph model instead of the fast CPU path')
    return parser


def models_parser():
    """The ``paddleseg models`` argument parser."""
    parser = OneLineParser(prog='paddleseg models', description='List the model zoo: name (also the config '
                           'name --config takes), model, backbone, dataset, crop, iterations, published mIoU / '
                           'flip / ms+flip and whether the weights are cached. Reads the manifest only.')
    check = parser.add_argument_group('--check: build the four zoo models instead and run one forward pass each')
    check.add_argument('--check', action='store_true',
                       help='print parameter counts, output shapes and one forward pass per model (random '
                            'weights; imports Paddle)')
    check.add_argument('--num_classes', type=int, default=19, help='classes of the checked models (19)')
    check.add_argument('--input_size', type=int, nargs=2, default=[128, 128], metavar=('W', 'H'),
                       help='input image size of the forward pass (128 128)')
    return parser


def env_parser():
    """The ``paddleseg env`` argument parser."""
    return OneLineParser(prog='paddleseg env', description='Print what a bug report needs: paddle-psp, Paddle, '
                         'PaddleSeg, Python, CUDA / cuDNN and GPU if any, the CPU and its instruction sets, '
                         'and the CPU tuning paddleseg applies on this machine.')


# verb -> its parser (the command line checks flags with it before importing the verb's module)
PARSERS = {'train': train_parser, 'val': val_parser, 'predict': predict_parser, 'export': export_parser,
           'benchmark': benchmark_parser, 'download': download_parser, 'prepare': prepare_parser,
           'quickstart': quickstart_parser, 'models': models_parser, 'env': env_parser}
