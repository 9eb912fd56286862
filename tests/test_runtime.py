"""CPU tuning: which variables are set for which CPU and process, switching it off, logging once."""
import logging
import os
import subprocess
import sys
import types

import pytest

from paddle_psp.core import runtime
from paddle_psp.core.log import logger

AVX512 = 'fpu sse2 avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16'


def cpuinfo(vendor, flags, cores=((0, 0), (0, 1))):
    blocks = []
    for processor, (physical, core) in enumerate(cores):
        blocks.append(f'processor\t: {processor}\nvendor_id\t: {vendor}\nmodel name\t: Some CPU\n'
                      f'physical id\t: {physical}\ncore id\t\t: {core}\nflags\t\t: {flags}\n')
    return '\n'.join(blocks)


MALLOC = {'MALLOC_MMAP_THRESHOLD_': str(8 * 2 ** 20)} if runtime.is_glibc() else {}


@pytest.mark.parametrize('text, expected', [
    (cpuinfo('AuthenticAMD', AVX512), {'MKL_DEBUG_CPU_TYPE': '7'}),
    (cpuinfo('AuthenticAMD', 'fpu sse2 avx avx2 fma'), {'MKL_DEBUG_CPU_TYPE': '5'}),
    (cpuinfo('AuthenticAMD', 'fpu sse2 avx'), {}),  # no AVX2: MKL's default path is all there is
    (cpuinfo('GenuineIntel', AVX512), {}),  # MKL picks its best path on Intel by itself
    ('', {}),  # no /proc/cpuinfo
])
def test_tuning_env_depends_on_the_cpu(text, expected):
    assert runtime.tuning_env({}, cpuinfo=text) == expected
    assert runtime.tuning_env({}, cpuinfo=text, training=True) == dict(expected, **MALLOC)


@pytest.mark.parametrize('vendor', ['AuthenticAMD', 'GenuineIntel'])
def test_mmap_threshold_only_for_training(vendor):
    # It lowers a training step's peak RSS; it slows an evaluation forward on both CPUs (module docstring).
    text = cpuinfo(vendor, AVX512)
    assert runtime.MMAP_THRESHOLD_VAR not in runtime.tuning_env({}, cpuinfo=text)
    assert (runtime.MMAP_THRESHOLD_VAR in runtime.tuning_env({}, cpuinfo=text, training=True)) == runtime.is_glibc()


def test_tuning_env_keeps_user_settings_and_can_be_switched_off():
    text = cpuinfo('AuthenticAMD', AVX512)
    assert runtime.tuning_env({'MKL_DEBUG_CPU_TYPE': '5', **MALLOC}, cpuinfo=text, training=True) == {}
    assert runtime.tuning_env({runtime.NO_TUNING_VAR: '1'}, cpuinfo=text, training=True) == {}
    expected = {'MKL_DEBUG_CPU_TYPE': '7', **MALLOC}
    assert runtime.tuning_env({runtime.NO_TUNING_VAR: '0'}, cpuinfo=text, training=True) == expected


def test_mmap_threshold_is_set_in_process_on_glibc():
    assert runtime._set_mmap_threshold(runtime.MMAP_THRESHOLD) == runtime.is_glibc()


USABLE = len(os.sched_getaffinity(0))


def test_physical_cores_counts_distinct_cores():
    smt = cpuinfo('AuthenticAMD', AVX512, cores=((0, 0), (0, 0), (0, 1), (0, 1)))
    assert runtime.physical_cores(smt) == min(2, USABLE)
    one_core_two_threads = cpuinfo('AuthenticAMD', AVX512, cores=((0, 0), (0, 0)))
    assert runtime.physical_cores(one_core_two_threads) == 1
    two_sockets = cpuinfo('GenuineIntel', AVX512, cores=((0, 0), (1, 0)))
    assert runtime.physical_cores(two_sockets) == min(2, USABLE)
    assert runtime.physical_cores('') == USABLE


def run_python(code, **env):
    environ = {key: value for key, value in os.environ.items()
               if key not in runtime.TUNING_VARIABLES + (runtime.NO_TUNING_VAR,)}
    environ.update(env)
    result = subprocess.run([sys.executable, '-c', code], env=environ, capture_output=True, text=True,
                            check=True)
    return result.stdout + result.stderr


APPLY_TWICE = ('import os; from paddle_psp.core import runtime; from paddle_psp.core.log import logger; '
               'logger.setLevel("DEBUG"); print(runtime.apply_cpu_tuning(training={training})); '
               'runtime.apply_cpu_tuning(); print("env", os.environ.get("MKL_DEBUG_CPU_TYPE"), '
               'os.environ.get("MALLOC_MMAP_THRESHOLD_"))')


@pytest.mark.parametrize('training', [False, True])
def test_apply_sets_the_environment_and_logs_one_line(training):
    out = run_python(APPLY_TWICE.format(training=training))
    expected = runtime.tuning_env({}, training=training)
    assert out.count('cpu tuning:') == 1
    assert f'env {expected.get("MKL_DEBUG_CPU_TYPE")} {expected.get(runtime.MMAP_THRESHOLD_VAR)}' in out
    assert str(expected) in out
    for key, value in expected.items():
        assert f'{key}={value}' in out.split('cpu tuning:')[1].splitlines()[0]


@pytest.mark.parametrize('verb, training', [('train', True), ('quickstart', True), ('val', False),
                                            ('predict', False), ('export', False), ('benchmark', False)])
def test_cli_tunes_training_verbs_for_training(monkeypatch, verb, training):
    import paddle_psp_cli as cli
    calls = []
    monkeypatch.setattr(runtime, 'apply_cpu_tuning', lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(cli.parsers, 'PARSERS', {})
    stub = types.ModuleType('stub_verb')
    stub.main = lambda argv: 0
    monkeypatch.setitem(sys.modules, 'stub_verb', stub)
    monkeypatch.setitem(cli.VERBS, verb, ('stub_verb', ''))
    assert cli.main([verb]) == 0
    assert calls == [{'training': training}]


def test_apply_does_nothing_when_switched_off():
    out = run_python(APPLY_TWICE.format(training=True), PADDLE_PSP_NO_TUNING='1')
    assert 'cpu tuning: off (PADDLE_PSP_NO_TUNING=1)' in out and 'env None None' in out and '{}' in out
    out = run_python('import os; from paddle_psp.core import runtime; from paddle_psp.core.log import logger; '
                     'logger.setLevel("DEBUG"); runtime.apply_cpu_tuning(enabled=False); '
                     'print("env", os.environ.get("MKL_DEBUG_CPU_TYPE"), '
                     'os.environ.get("PADDLE_PSP_NO_TUNING"))')
    assert 'env None 1' in out


def test_log_line_names_user_settings(monkeypatch):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)  # the tuning line is a debug message
    monkeypatch.setitem(runtime._state, 'logged', False)
    monkeypatch.setenv('MKL_DEBUG_CPU_TYPE', '5')
    monkeypatch.setenv('MALLOC_MMAP_THRESHOLD_', '1048576')
    monkeypatch.delenv(runtime.NO_TUNING_VAR, raising=False)
    monkeypatch.setattr(runtime, 'read_cpuinfo', lambda path=runtime.CPUINFO: cpuinfo('AuthenticAMD', AVX512))
    try:
        assert runtime.apply_cpu_tuning() == {}
    finally:
        logger.removeHandler(handler)
        # setLevel, not the attribute: it also clears the logger's cache of enabled levels, which would
        # otherwise keep debug lines on for every later test of this process
        logger.setLevel(level)
    assert [r.getMessage() for r in records] == [
        'cpu tuning: MKL_DEBUG_CPU_TYPE=5 (AMD, AVX-512, set by the user), '
        f'MALLOC_MMAP_THRESHOLD_=1048576 (set by the user), {min(2, USABLE)} cores']
