"""The flags of ``paddleseg val``. Standard library only (see :mod:`paddle_psp.core.flags`)."""
from paddle_psp.core.flags import (OneLineParser, add_data_format_argument, add_device_argument, add_opts_argument,
                                   add_profile_argument, true_or_false)
from paddle_psp.inference.flags import add_tta_arguments
from paddle_psp.weights.flags import add_config_arguments


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
    parser.add_argument('--auc_roc', type=true_or_false, nargs='?', const=True, default=False, metavar='True|False',
                        help='also compute the area under the ROC curve of the softmax scores, as PaddleSeg '
                             'does (keeps every pixel\'s scores in memory)')
    output = parser.add_argument_group('metrics as JSON (mIoU, Acc, Kappa, Dice, per-class scores)')
    output.add_argument('--save_dir', help='write SAVE_DIR/metrics.json')
    output.add_argument('--output', metavar='FILE', help='write the metrics to FILE')
    add_profile_argument(parser)
    add_opts_argument(parser)
    add_tta_arguments(parser, ('--aug_eval',))
    return parser
