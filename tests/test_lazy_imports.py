"""``import paddle_psp`` is light and registers the models the moment PaddleSeg is imported, whoever imports it
and in whichever order; Paddle and PaddleSeg are then imported with scikit-learn, SciPy, requests and httpx
deferred (paddle_psp/core/lazy.py): none is imported until a PaddleSeg (or Paddle) function uses it, each then
answers as the real one, and any later ``import sklearn`` (or the others) is the real module. Each case runs
in a fresh interpreter."""
import os
import subprocess
import sys

import pytest

REAL = 'type(sys.modules["{0}"]) is types.ModuleType and "{0}" in repr(sys.modules["{0}"].__spec__)'


def python(code, timeout=300):
    """stdout of ``code`` run by a fresh interpreter (failing the test with its stderr if it fails)."""
    run = subprocess.run([sys.executable, '-W', 'ignore', '-c', 'import sys, types\n' + code], capture_output=True,
                         text=True, timeout=timeout, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout.split()


OURS = ('ZooPSPNet', 'ZooDeepLabV3', 'ZooResNet50_vd', 'ZooResNet101_vd', 'ZooCrossEntropyLoss')
REGISTERED = ('from paddleseg.cvlibs import manager\n'
              'print(sum(name in registry.components_dict for name in %r\n'
              '          for registry in (manager.MODELS, manager.BACKBONES, manager.LOSSES)))\n' % (OURS,))
DEFERRED_IMPORTED = ('print(sorted({m.split(".")[0] for m in sys.modules} & {"sklearn", "scipy", "pandas", '
                     '"requests", "httpx"}))\n')


def test_import_paddle_psp_is_light_and_registers_when_paddleseg_is_imported():
    out = python('import paddle_psp\n'
                 'print(sorted({"paddle", "paddleseg", "numpy"} & set(sys.modules)))\n'
                 + REGISTERED + DEFERRED_IMPORTED)
    assert out == ['[]', '5', '[]']


@pytest.mark.parametrize('first', ['import paddleseg, paddle_psp', 'import paddle, paddle_psp',
                                   'import paddle_psp, paddle', 'import paddle_psp.engine.train',
                                   'import paddle_psp.models', 'from paddle_psp import Segmenter',
                                   'import importlib.util, paddle_psp; importlib.util.find_spec("paddleseg")'])
def test_the_models_register_whatever_is_imported_first(first):
    out = python(first + '\n' + REGISTERED)
    assert out == ['5']


def test_paddle_imported_first_still_defers_them():
    out = python('import paddle_psp, paddle\n' + DEFERRED_IMPORTED + 'import paddleseg\n' + DEFERRED_IMPORTED
                 + 'print(any(type(f).__name__ == "_ImportHook" for f in sys.meta_path))')
    assert out == ['[]', '[]', 'False']


def test_import_paddle_psp_imports_none_of_them():
    out = python('import paddle_psp, paddleseg\n'
                 'deferred = {"sklearn", "scipy", "pandas", "requests", "httpx"}\n'
                 'print(sorted(m for m in sys.modules if m.split(".")[0] in deferred) == [])\n'
                 'print(sys.modules["paddleseg.cvlibs.manager"].MODELS["ZooPSPNet"].__name__)')
    assert out == ['True', 'ZooPSPNet']


def test_paddleseg_functions_that_use_them_still_compute_the_right_values():
    out = python(
        'import numpy as np, paddle_psp\n'
        'from paddleseg.utils import metrics\n'
        'from paddleseg.models.losses import maskformer_loss\n'
        'from paddleseg.transforms import functional\n'
        'logits = np.array([[.9, .1], [.2, .8], [.3, .7], [.6, .4]])[:, :, None, None]\n'
        'print(metrics.auc_roc(logits, np.array([0, 1, 1, 0])[:, None, None, None], 2))\n'
        'rows, cols = maskformer_loss.linear_sum_assignment(np.array([[4., 1.], [2., 5.]]))\n'
        'print(list(cols))\n'
        'print(functional.distance_transform_edt(np.array([[0., 1., 1., 1.]])).tolist())\n'
        'import paddle.utils.download, paddleseg.utils.download\n'
        'print(paddle.utils.download.httpx.stream.__module__, paddleseg.utils.download.requests.get.__module__)\n'
        f'print({REAL.format("sklearn.metrics")} and {REAL.format("scipy.optimize")} and '
        f'{REAL.format("scipy.ndimage")} and {REAL.format("httpx")} and {REAL.format("requests")})')
    assert out == ['1.0', '[1,', '0]', '[[0.0,', '1.0,', '2.0,', '3.0]]', 'httpx', 'requests.api', 'True']


def test_a_later_import_is_the_real_module_and_paddleseg_then_uses_it():
    out = python('import numpy as np, paddle_psp\n'
                 'import sklearn.metrics, scipy.io\n'
                 f'print({REAL.format("sklearn.metrics")} and {REAL.format("scipy")})\n'
                 'from sklearn.metrics import roc_auc_score\n'
                 'print(roc_auc_score([0, 1], [.2, .7]))\n'
                 'from paddleseg.utils import metrics\n'
                 'print(metrics.skmetrics.roc_auc_score is roc_auc_score)')
    assert out == ['True', '1.0', 'True']


@pytest.mark.parametrize('first', ['sklearn.metrics', 'paddleseg'])
def test_nothing_is_deferred_when_imported_before_paddle_psp(first):
    out = python(f'import {first}, paddle_psp, sklearn.metrics\n'
                 'from paddleseg.utils import metrics\n'
                 'print(metrics.skmetrics is sklearn.metrics)')
    assert out == ['True']


def test_an_unforeseen_import_during_the_block_gets_the_real_modules():
    """Without PaddleSeg: a submodule with no stand-in, or an attribute not named, replaces the stand-ins."""
    out = python('from paddle_psp.core import lazy\n'
                 'with lazy.deferred_imports():\n'
                 '    from scipy.ndimage import shift\n'
                 '    print(type(shift).__name__, "scipy" in sys.modules, "scipy.ndimage" in sys.modules)\n'
                 '    import scipy.io\n'
                 f'    print({REAL.format("scipy")} and {REAL.format("scipy.io")})\n'
                 'print(shift([1., 2., 3.], 1, order=0).tolist() == [0., 1., 2.])\n'
                 'with lazy.deferred_imports():\n'
                 '    import sklearn.metrics as m\n'
                 '    print(m.roc_auc_score([0, 1], [.3, .6]))\n'
                 f'    print({REAL.format("sklearn.metrics")})\n'
                 'print(any(isinstance(f, lazy._Fallback) for f in sys.meta_path))', timeout=120)
    assert out == ['_DeferredFunction', 'True', 'True', 'True', 'True', '1.0', 'True', 'False']
