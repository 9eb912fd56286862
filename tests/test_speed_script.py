"""benchmarks/speed.py: the three-way split of a gain (tuning alone, code on top, both) and the environments
of its paths (no timing: the rows are made up)."""
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, 'benchmarks'))
import speed  # noqa: E402  (a script in benchmarks/, importable once that folder is on the path)
from paddle_psp.core import runtime  # noqa: E402


def row(seconds, **extra):
    return dict(median_s=seconds, cpu_s=seconds, peak_rss_gib=1.0, load_before=1.0, load_after=1.0, **extra)


def test_three_ratios_split_the_gain_into_tuning_and_code():
    text = speed.three_ratios(row(12.0), row(4.0), row(1.0), 'fast path')
    assert 'tuning alone (PaddleSeg default / PaddleSeg tuned) 3.0x' in text
    assert 'code on top (PaddleSeg tuned / fast path) 4.0x' in text
    assert 'in all (PaddleSeg default / fast path) 12.0x' in text


def test_ratio_lines_take_paddleseg_tuned_as_the_middle_row():
    eval_rows = [row(10.0), row(5.0), row(4.0, agreement=1.0), row(2.0, agreement=0.5)]
    train_rows = [row(30.0), row(20.0), row(10.0)]
    lines = speed.ratio_lines({'pspnet': (eval_rows, train_rows)}).splitlines()
    assert lines[0].startswith('- PSPNet ResNet50 OS8 eval: tuning alone (PaddleSeg default / PaddleSeg tuned) 2.0x')
    assert 'code on top (PaddleSeg tuned / fast path) 2.5x' in lines[0] and 'agreement 50.000 %' in lines[0]
    assert 'tuning alone (PaddleSeg default / PaddleSeg tuned) 1.5x' in lines[1]
    assert 'code on top (PaddleSeg tuned / paddle-psp) 2.0x, in all (PaddleSeg default / paddle-psp) 3.0x' in lines[1]


def test_tuned_paths_get_the_tuning_and_default_paths_none(monkeypatch):
    monkeypatch.setenv('MKL_DEBUG_CPU_TYPE', '5')
    monkeypatch.delenv(runtime.NO_TUNING_VAR, raising=False)
    default, tuned = speed.default_env(), speed.tuned_env(training=True)
    assert 'MKL_DEBUG_CPU_TYPE' not in default and default[runtime.NO_TUNING_VAR] == '1'
    assert runtime.NO_TUNING_VAR not in tuned and runtime.positive_int(tuned[runtime.THREADS_VAR])
    if runtime.is_glibc():
        assert tuned[runtime.MMAP_THRESHOLD_VAR] == str(runtime.MMAP_THRESHOLD)
