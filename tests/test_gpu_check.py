"""benchmarks/gpu_check.py: its skip line without a GPU, and its GPU-against-CPU plumbing run on the CPU.

On a machine without a GPU the "GPU" side of val / predict / export runs on the CPU too (Paddle Inference
falls back to the CPU), so agreement is total; what is checked is that the commands, file names and
parsing fit together, which a GPU machine cannot be relied on to check.
"""
import os
import subprocess
import sys

import paddle
import pytest

from conftest import SUBPROCESS_ENV

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO_ROOT, 'benchmarks', 'gpu_check.py')
sys.path.insert(0, os.path.dirname(SCRIPT))
import gpu_check  # noqa: E402  (a script in benchmarks/, importable once that folder is on the path)
from paddle_psp.data.synthetic import make_cityscapes_like  # noqa: E402
from paddle_psp.config import load_config  # noqa: E402
from paddle_psp.weights.state_dict import randomize  # noqa: E402

requires_no_gpu = pytest.mark.skipif(gpu_check.has_gpu(), reason='this machine has a GPU')


@requires_no_gpu
def test_skips_without_gpu():
    env = {**os.environ, **SUBPROCESS_ENV, 'PYTHONPATH': REPO_ROOT}
    done = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1].startswith(gpu_check.SKIP_LINE)


@requires_no_gpu
def test_gpu_against_cpu_checks_fit_together(tmp_path):
    """val, predict and export of a random checkpoint of the quickstart model, each through the CLI."""
    data = make_cityscapes_like(str(tmp_path / 'data'), num_train=4, num_val=2, size=(128, 64))
    options = gpu_check.dataset_options(data)
    checkpoint = str(tmp_path / 'model.pdparams')
    paddle.seed(0)
    model = randomize(load_config(gpu_check.CONFIG, opts=options[1:]).model, seed=0, size=64)  # varied labels
    paddle.save(model.state_dict(), checkpoint)
    model_args = ['--config', gpu_check.CONFIG, '--model_path', checkpoint] + options
    images = os.path.join(data, 'leftImg8bit', 'val')
    rows = [(name, *check()) for name, check in (
        ('val', lambda: gpu_check.check_val(model_args)),
        ('predict', lambda: gpu_check.check_predict(str(tmp_path), model_args, images)),
        ('export', lambda: gpu_check.check_export(str(tmp_path), model_args, images)))]
    gpu_check.print_table(rows)
    assert all(ok for _, ok, _ in rows), rows
    assert '100.0000%' in rows[1][2] and '100.0000%' in rows[2][2]
    labels = gpu_check.read_labels(str(tmp_path / 'predict_cpu' / 'pseudo_color_prediction'))
    assert len(labels) == 2 and all(a.shape == (64, 128) for a in labels.values())
    assert len(set().union(*(set(a.ravel().tolist()) for a in labels.values()))) > 1  # not one class
