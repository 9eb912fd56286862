"""The flags of ``paddleseg predict`` and ``paddleseg export``, and the inference flags ``val`` and the benchmark
share: test-time augmentation and sliding window, the fast path's ``--dygraph`` and int8 ``--quantize``.
Standard library only (see :mod:`paddle_psp.core.flags`)."""
from paddle_psp.core.flags import OneLineParser, add_device_argument, add_opts_argument, add_profile_argument
from paddle_psp.weights.flags import add_config_arguments

OUTPUT_OPS = ('argmax', 'softmax', 'none')  # what export appends to the logits (inference/export.py)
SUBMISSIONS = ('cityscapes', 'voc')  # test-server formats of predict --submission (inference/submission.py)
QUANTIZE_CHOICES = ('none', 'int8')  # --quantize (inference/quantize.py)
DEFAULT_CALIB_IMAGES = 32  # --calib_images
DEFAULT_SCALES = (0.75, 1.0, 1.25)  # multi-scale TTA's scales: the ms+flip column's (paddle_psp/benchmark/plan.py)

# Where the fast path keeps its exported models (paddle_psp/inference/cache.py; stated here without importing it,
# so that --help stays light; tests/test_cache.py checks that the two agree).
CACHE_HELP = ('Its exports are cached in $PADDLE_PSP_CACHE (default ~/.cache/paddle_psp/inference), at most '
              '$PADDLE_PSP_CACHE_SIZE (default 4G; K, M, G, T), least recently used first out')


def add_quantize_arguments(parser):
    """Add ``--quantize`` and ``--calib_images`` (int8 post-training quantization) to ``parser``."""
    parser.add_argument('--quantize', choices=QUANTIZE_CHOICES, default='none',
                        help='int8: post-training quantization (Paddle\'s PTQ, run on oneDNN int8 kernels), '
                        'calibrated on the config\'s train_dataset; faster on CPUs with AMX / VNNI, not exact '
                        '(default none: fp32)')
    parser.add_argument('--calib_images', type=int, default=DEFAULT_CALIB_IMAGES, metavar='N',
                        help=f'train_dataset images calibrating --quantize int8 (default {DEFAULT_CALIB_IMAGES})')


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
