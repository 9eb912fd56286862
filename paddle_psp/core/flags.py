"""The flags several ``paddleseg`` verbs share, as PaddleSeg's ``tools/*.py`` spell them, and the parser class
every verb uses (errors in one line).

Standard library only, like every ``flags`` module of the package (``engine/flags.py``, ``evaluation/flags.py``,
``inference/flags.py``, ``weights/flags.py``, ``data/flags.py``, ``benchmark/flags.py``,
``quickstart_flags.py``): ``paddleseg VERB --help`` and a mistyped flag answer without importing Paddle.
PaddleSeg 2.8's flags keep their names, defaults and meanings; a value this build cannot honour (``--device
npu``) is refused by the parser in one line naming what to use instead. The flag-by-flag comparison with
PaddleSeg is in docs/flags.md.
"""
import argparse

DEVICES = ('cpu', 'gpu')  # what this build runs on
PADDLESEG_DEVICES = ('cpu', 'gpu', 'xpu', 'npu', 'mlu')  # what PaddleSeg's --device accepts
DATA_FORMATS = ('NCHW', 'NHWC')


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


def true_or_false(text):
    """PaddleSeg's ``type=bool`` flags as they are meant: True/False, yes/no, 1/0 (any case)."""
    lowered = text.lower()
    if lowered in ('true', 'yes', '1'):
        return True
    if lowered in ('false', 'no', '0'):
        return False
    raise argparse.ArgumentTypeError(f'expected True or False, got {text!r}')


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
