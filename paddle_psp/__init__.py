"""paddle-psp: PSPNet and DeepLabV3 on dilated ResNet50/101 for PaddleSeg on Paddle 3.

Importing this package is light (the standard library only) and registers into ``paddleseg.cvlibs.manager``
MODELS ZooPSPNet, ZooDeepLabV3; BACKBONES ZooResNet50_vd, ZooResNet101_vd; LOSSES ZooCrossEntropyLoss
the moment PaddleSeg is imported, by whoever imports it: at once when it is imported already, else through
a one-shot import hook (:func:`paddle_psp.core.lazy.when_paddleseg_imported`), which also imports Paddle and
PaddleSeg with scikit-learn and SciPy deferred until a function of theirs uses them. The ``paddleseg`` command
is the separate package :mod:`paddle_psp_cli`.

The Python API, ``paddle_psp.Segmenter`` and ``paddle_psp.Prediction`` (:mod:`paddle_psp.api`, docs/python_api.md),
and the subpackages (``paddle_psp.models``, ...) are imported on first use.
"""
import importlib
import sys

from paddle_psp.core import lazy

__version__ = '0.1.0'

API_NAMES = ('Segmenter', 'Prediction', 'UserError')
SUBMODULES = ('api', 'benchmark', 'config', 'core', 'data', 'engine', 'evaluation', 'inference', 'models',
               'quickstart', 'weights')


def register_models():
    """Import :mod:`paddle_psp.models`, which registers the models, backbones and the loss (PaddleSeg is imported)."""
    importlib.import_module('paddle_psp.models')


def __getattr__(name):
    """``paddle_psp.Segmenter``, ``Prediction`` and ``UserError`` from :mod:`paddle_psp.api`, and the subpackages
    (and ``quickstart``), imported on first use."""
    if name in API_NAMES:
        return getattr(importlib.import_module('paddle_psp.api'), name)
    if name in SUBMODULES:
        return importlib.import_module(f'{__name__}.{name}')
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


if 'paddleseg' in sys.modules:
    register_models()
else:
    lazy.when_paddleseg_imported(register_models)
