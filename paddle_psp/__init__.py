"""paddle-psp: PSPNet and DeepLabV3 on dilated ResNet50/101 for PaddleSeg on Paddle 3.

``import paddle_psp`` registers into ``paddleseg.cvlibs.manager``:
MODELS ZooPSPNet, ZooDeepLabV3; BACKBONES ZooResNet50_vd, ZooResNet101_vd; LOSSES ZooCrossEntropyLoss.
PaddleSeg is imported first, with scikit-learn and SciPy deferred until a PaddleSeg function uses them
(:mod:`paddle_psp_cli.lazy`). The ``paddleseg`` command lives in the separate, light package :mod:`paddle_psp_cli`.

The Python API, ``paddle_psp.Segmenter`` and ``paddle_psp.Prediction`` (:mod:`paddle_psp.api`, docs/python_api.md),
is imported on first use.
"""
from paddle_psp_cli import __version__  # noqa: F401  (one version string, readable without Paddle)
from paddle_psp_cli import lazy

with lazy.deferred_imports():
    import paddleseg  # noqa: F401  (the one place paddle_psp first imports it)

from paddle_psp import models  # noqa: E402,F401  (registers the models, backbones and the loss)

API_NAMES = ('Segmenter', 'Prediction', 'UserError')


def __getattr__(name):
    """``paddle_psp.Segmenter``, ``Prediction`` and ``UserError``, imported from :mod:`paddle_psp.api` on first use."""
    if name in API_NAMES:
        from paddle_psp import api
        return getattr(api, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
