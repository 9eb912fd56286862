"""The flags that name weights and configs (``--config``, ``--model_path``), and ``paddleseg download`` and
``paddleseg models``, the two verbs of the weights layer. Standard library only (see :mod:`paddle_psp.core.flags`).
"""
from paddle_psp.core.flags import OneLineParser
from paddle_psp.weights.shipped_configs import config_argument

MIRROR_ENV = 'PADDLE_PSP_MIRROR'  # environment variable: a mirror of https://bj.bcebos.com (weights/hub.py)
CONFIG_NAME_HELP = ', or the name of a shipped config (paddleseg models lists them)'


def add_config_arguments(parser, config_help):
    """Add ``--config`` (help ``config_help``) and ``--model_path`` to ``parser``, both required."""
    parser.add_argument('--config', required=True, type=config_argument, help=config_help + CONFIG_NAME_HELP)
    parser.add_argument('--model_path', required=True,
                        help='checkpoint: a model.pdparams file, a folder holding one, a URL or a zoo name')


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
