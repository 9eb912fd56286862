"""The flags of ``paddleseg train`` (PaddleSeg's tools/train.py flags, plus --device). Standard library only
(see :mod:`paddle_psp.core.flags`)."""
from paddle_psp.core.flags import DATA_FORMATS, OneLineParser, add_device_argument
from paddle_psp.weights.flags import CONFIG_NAME_HELP
from paddle_psp.weights.shipped_configs import config_argument


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
    parser.add_argument('--data_format', choices=list(DATA_FORMATS), default='NCHW',
                        help='tensor layout of the model and loss (NCHW)')
    parser.add_argument('--profiler_options', metavar='"KEY=VALUE;..."',
                        help='profile iterations with paddle.profiler, PaddleSeg\'s option string, e.g. '
                             '"batch_range=[10,20];profile_path=/tmp/profile" (see engine/profiler.py)')
    parser.add_argument('--opts', nargs='+', default=[], metavar='KEY=VALUE',
                        help='override config keys, e.g. train_dataset.dataset_root=data/cityscapes')
    return parser
