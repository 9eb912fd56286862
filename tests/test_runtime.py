"""CPU tuning: which variables are set for which CPU and process, switching it off, logging once."""
import logging
import os
import subprocess
import sys
import types

import pytest

from paddle_psp.core import runtime
from paddle_psp.core.errors import UserError
from paddle_psp.core.log import logger

AVX512 = 'fpu sse2 avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16'


def cpuinfo(vendor, flags, cores=((0, 0), (0, 1))):
    blocks = []
    for processor, (physical, core) in enumerate(cores):
        blocks.append(f'processor\t: {processor}\nvendor_id\t: {vendor}\nmodel name\t: Some CPU\n'
                      f'physical id\t: {physical}\ncore id\t\t: {core}\nflags\t\t: {flags}\n')
    return '\n'.join(blocks)


MALLOC = {'MALLOC_MMAP_THRESHOLD_': str(8 * 2 ** 20)} if runtime.is_glibc() else {}


def threads(text):
    """The math-thread variable the tuning adds on a CPU described by cpuinfo ``text`` (one process)."""
    return {runtime.THREADS_VAR: str(runtime.physical_cores(text))}


@pytest.mark.parametrize('text, expected', [
    (cpuinfo('AuthenticAMD', AVX512), {'MKL_DEBUG_CPU_TYPE': '7'}),
    (cpuinfo('AuthenticAMD', 'fpu sse2 avx avx2 fma'), {'MKL_DEBUG_CPU_TYPE': '5'}),
    (cpuinfo('AuthenticAMD', 'fpu sse2 avx'), {}),  # no AVX2: MKL's default path is all there is
    (cpuinfo('GenuineIntel', AVX512), {}),  # MKL picks its best path on Intel by itself
    ('', {}),  # no /proc/cpuinfo
])
def test_tuning_env_depends_on_the_cpu(text, expected):
    assert runtime.tuning_env({}, cpuinfo=text) == dict(expected, **threads(text))
    assert runtime.tuning_env({}, cpuinfo=text, training=True) == dict(expected, **MALLOC, **threads(text))


@pytest.mark.parametrize('vendor', ['AuthenticAMD', 'GenuineIntel'])
def test_mmap_threshold_only_for_training(vendor):
    # It lowers a training step's peak RSS; it slows an evaluation forward on both CPUs (module docstring).
    text = cpuinfo(vendor, AVX512)
    assert runtime.MMAP_THRESHOLD_VAR not in runtime.tuning_env({}, cpuinfo=text)
    assert (runtime.MMAP_THRESHOLD_VAR in runtime.tuning_env({}, cpuinfo=text, training=True)) == runtime.is_glibc()


def test_tuning_env_keeps_user_settings_and_can_be_switched_off():
    text = cpuinfo('AuthenticAMD', AVX512)
    user = {'MKL_DEBUG_CPU_TYPE': '5', runtime.THREADS_VAR: '3', **MALLOC}
    assert runtime.tuning_env(user, cpuinfo=text, training=True) == {}
    assert runtime.tuning_env({runtime.NO_TUNING_VAR: '1'}, cpuinfo=text, training=True) == {}
    expected = {'MKL_DEBUG_CPU_TYPE': '7', **MALLOC, **threads(text)}
    assert runtime.tuning_env({runtime.NO_TUNING_VAR: '0'}, cpuinfo=text, training=True) == expected


def test_mallopt_sets_each_malloc_variable_in_process_on_glibc():
    assert runtime._mallopt(runtime.MMAP_THRESHOLD_VAR, runtime.MMAP_THRESHOLD) == runtime.is_glibc()
    assert set(runtime.MALLOPT_PARAMS) == {runtime.MMAP_THRESHOLD_VAR, *runtime.REUSE_MALLOC}


@pytest.mark.parametrize('vendor', ['AuthenticAMD', 'GenuineIntel'])
def test_train_malloc_reuse_replaces_the_threshold_for_training_only(vendor):
    text = cpuinfo(vendor, AVX512)
    reuse = {runtime.TRAIN_MALLOC_VAR: 'reuse'}
    training = runtime.tuning_env(reuse, cpuinfo=text, training=True)
    assert runtime.MMAP_THRESHOLD_VAR not in training
    assert {key: training.get(key) for key in runtime.REUSE_MALLOC} == (
        runtime.REUSE_MALLOC if runtime.is_glibc() else dict.fromkeys(runtime.REUSE_MALLOC))
    assert runtime.tuning_env(reuse, cpuinfo=text) == runtime.tuning_env({}, cpuinfo=text)  # not evaluating
    for release in ({}, {runtime.TRAIN_MALLOC_VAR: ''}, {runtime.TRAIN_MALLOC_VAR: ' Release '}):
        assert runtime.tuning_env(release, cpuinfo=text, training=True) == runtime.tuning_env({}, cpuinfo=text,
                                                                                               training=True)
    user = dict(reuse, MALLOC_MMAP_MAX_='65536')  # a variable the user set is never overridden
    assert runtime.tuning_env(user, cpuinfo=text, training=True).get('MALLOC_MMAP_MAX_') is None


@pytest.mark.parametrize('value', ['fast', '1', 'reuse release'])
@pytest.mark.parametrize('glibc', [True, False])
def test_train_malloc_refuses_other_values_with_one_line(monkeypatch, value, glibc):
    monkeypatch.setattr(runtime, 'is_glibc', lambda: glibc)  # refused where the variables do nothing, too
    with pytest.raises(UserError, match=f"^PADDLE_PSP_TRAIN_MALLOC={value!r}: expected one of release, reuse"):
        runtime.tuning_env({runtime.TRAIN_MALLOC_VAR: value}, cpuinfo='', training=True)
    assert runtime.tuning_env({runtime.TRAIN_MALLOC_VAR: value}, cpuinfo='') == runtime.tuning_env({}, cpuinfo='')


def stub_verb(monkeypatch, verb, main):
    """The CLI's ``verb`` replaced by a module whose ``main`` is ``main`` and a parser that takes anything: the
    CLI itself (imports, tuning, error handling) runs as it is. Returns the paddle_psp_cli module."""
    import paddle_psp_cli as cli
    monkeypatch.setitem(cli.PARSERS, verb, lambda: types.SimpleNamespace(parse_args=lambda argv: None))
    stub = types.ModuleType('stub_verb')
    stub.main = main
    monkeypatch.setitem(sys.modules, 'stub_verb', stub)
    monkeypatch.setitem(cli.VERBS, verb, ('stub_verb', ''))
    return cli


def test_cli_refuses_a_bad_train_malloc_before_any_work(monkeypatch, capsys):
    ran = []
    monkeypatch.setenv(runtime.TRAIN_MALLOC_VAR, 'fast')
    cli = stub_verb(monkeypatch, 'train', lambda argv: ran.append(argv) or 0)
    tuning = {key: os.environ.get(key) for key in runtime.TUNING_VARIABLES}
    assert cli.main(['train']) == 2
    assert ran == [] and {key: os.environ.get(key) for key in runtime.TUNING_VARIABLES} == tuning
    assert capsys.readouterr().err == ("paddleseg train: error: PADDLE_PSP_TRAIN_MALLOC='fast': expected one of "
                                       "release, reuse (or unset: release)\n")


# A training process's tuning applied, then a 64 MiB buffer filled and freed again and again (numpy allocates
# with malloc): the minor page faults of the refills. Released blocks come back as fresh pages, every time;
# reused ones are the same pages. The first fill is not counted (it grows the heap either way).
REFILLS = ('import resource, numpy; from paddle_psp.core import runtime; '
           'runtime.apply_cpu_tuning(training=True); numpy.ones(2 ** 24, "float32"); '
           'before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt; '
           '[numpy.ones(2 ** 24, "float32").sum() for _ in range(8)]; '
           'print("faults", resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)')


@pytest.mark.skipif(not runtime.is_glibc(), reason='the malloc variables are glibc\'s')
def test_train_malloc_reuse_faults_in_no_fresh_pages():
    def faults(mode):
        out = run_python(REFILLS, **{runtime.TRAIN_MALLOC_VAR: mode})
        return int(out.split('faults ')[1].split()[0])
    released, reused = faults('release'), faults('reuse')
    # 8 refills of 64 MiB: 8 x 32 faults even where the kernel backs them with 2 MiB pages (16384 with 4 KiB)
    assert released >= 8 * 32
    assert reused < released / 4


USABLE = len(os.sched_getaffinity(0))


def test_physical_cores_counts_distinct_cores():
    smt = cpuinfo('AuthenticAMD', AVX512, cores=((0, 0), (0, 0), (0, 1), (0, 1)))
    assert runtime.physical_cores(smt) == min(2, USABLE)
    one_core_two_threads = cpuinfo('AuthenticAMD', AVX512, cores=((0, 0), (0, 0)))
    assert runtime.physical_cores(one_core_two_threads) == 1
    two_sockets = cpuinfo('GenuineIntel', AVX512, cores=((0, 0), (1, 0)))
    assert runtime.physical_cores(two_sockets) == min(2, USABLE)
    assert runtime.physical_cores('') == USABLE


# what decides the math threads besides the tuning variables
THREAD_INPUTS = ('OMP_NUM_THREADS',) + runtime.LOCAL_RANKS_VARS


def run_python(code, **env):
    ignored = runtime.TUNING_VARIABLES + (runtime.NO_TUNING_VAR, runtime.TRAIN_MALLOC_VAR) + THREAD_INPUTS
    environ = {key: value for key, value in os.environ.items() if key not in ignored}
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


@pytest.mark.parametrize('verb, training, malloc', [('train', True, 'release'), ('quickstart', True, 'reuse'),
                                                    ('val', False, 'release'), ('predict', False, 'release'),
                                                    ('export', False, 'release'), ('benchmark', False, 'release')])
def test_cli_tunes_training_verbs_for_training(monkeypatch, verb, training, malloc):
    calls = []
    monkeypatch.setattr(runtime, 'apply_cpu_tuning', lambda **kwargs: calls.append(kwargs))
    cli = stub_verb(monkeypatch, verb, lambda argv: 0)
    assert cli.main([verb]) == 0
    assert calls == [{'training': training, 'malloc_default': malloc}]
    assert set(runtime.TRAIN_MALLOC_DEFAULTS) == set(cli.TRAINING_VERBS)


def test_quickstart_reuses_unless_told_otherwise():
    text = cpuinfo('GenuineIntel', AVX512)
    quickstart = runtime.TRAIN_MALLOC_DEFAULTS['quickstart']
    assert runtime.TRAIN_MALLOC_DEFAULTS == {'train': 'release', 'quickstart': 'reuse'}
    assert runtime.tuning_env({}, cpuinfo=text, training=True, malloc_default=quickstart) == runtime.tuning_env(
        {runtime.TRAIN_MALLOC_VAR: 'reuse'}, cpuinfo=text, training=True)
    told = {runtime.TRAIN_MALLOC_VAR: 'release'}
    assert runtime.tuning_env(told, cpuinfo=text, training=True, malloc_default=quickstart) == runtime.tuning_env(
        {}, cpuinfo=text, training=True)
    refusal = r"^PADDLE_PSP_TRAIN_MALLOC='x': expected one of release, reuse \(or unset: reuse\)$"
    with pytest.raises(UserError, match=refusal):
        runtime.tuning_env({runtime.TRAIN_MALLOC_VAR: 'x'}, cpuinfo=text, training=True, malloc_default=quickstart)


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
    monkeypatch.setitem(runtime._state, 'threads', None)
    monkeypatch.setattr(runtime, 'set_math_threads', lambda count: None)  # not this test process' threads
    monkeypatch.setenv('MKL_DEBUG_CPU_TYPE', '5')
    monkeypatch.setenv('MALLOC_MMAP_THRESHOLD_', '1048576')
    monkeypatch.setenv(runtime.THREADS_VAR, '3')
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
        f'MALLOC_MMAP_THRESHOLD_=1048576 (set by the user), '
        f'FLAGS_paddle_num_threads=3 (math threads, set by the user), {min(2, USABLE)} cores']


# ------------------------------------------------------------------------------------------ math threads
EIGHT_CORES = cpuinfo('GenuineIntel', AVX512, cores=[(0, core) for core in range(8)])


@pytest.mark.parametrize('environ, expected', [
    ({}, (8, '8 cores')),
    ({'PADDLE_LOCAL_SIZE': '2', 'PADDLE_TRAINERS_NUM': '4'}, (4, '8 cores / 2 local ranks')),  # 2 per host
    ({'PADDLE_TRAINERS_NUM': '4'}, (2, '8 cores / 4 local ranks')),  # no local size: never oversubscribe
    ({'PADDLE_LOCAL_SIZE': '3'}, (2, '8 cores / 3 local ranks')),
    ({'PADDLE_LOCAL_SIZE': '16'}, (1, '8 cores / 16 local ranks')),  # at least 1
    ({runtime.THREADS_VAR: '3', 'PADDLE_LOCAL_SIZE': '2'}, (3, 'set by the user')),  # the user's value wins
    ({runtime.THREADS_VAR: '1', 'OMP_NUM_THREADS': '4'}, (1, 'set by the user')),
    ({'OMP_NUM_THREADS': '4'}, (4, 'from OMP_NUM_THREADS')),
    ({'OMP_NUM_THREADS': '1'}, (8, '8 cores')),  # what Paddle writes at import: not the user's
    ({runtime.THREADS_VAR: 'abc'}, (8, '8 cores')),  # no count: Paddle ignores it, so do we
    ({runtime.THREADS_VAR: '0', 'PADDLE_LOCAL_SIZE': 'x'}, (8, '8 cores')),
    ({runtime.NO_TUNING_VAR: '1', runtime.THREADS_VAR: '3'}, (None, 'PADDLE_PSP_NO_TUNING=1')),  # Paddle's own
])
def test_math_threads_rule(monkeypatch, environ, expected):
    monkeypatch.setattr(runtime, 'usable_cpus', lambda: 8)
    assert runtime.math_threads_setting(environ, cpuinfo=EIGHT_CORES) == expected
    added = runtime.tuning_env(environ, cpuinfo=EIGHT_CORES).get(runtime.THREADS_VAR)
    replaces = runtime.positive_int(environ.get(runtime.THREADS_VAR)) is None
    assert added == (str(expected[0]) if expected[0] is not None and replaces else None)


# MKL's thread count as Paddle's OpenMP runtime reports it, after paddle-psp's tuning (a fresh process)
APPLY_AND_REPORT = (
    'import ctypes, os; from paddle_psp.core import runtime; from paddle_psp.core.log import logger; '
    'logger.setLevel("DEBUG"); runtime.apply_cpu_tuning(); import paddle; '
    'paddle.matmul(paddle.ones([64, 64]), paddle.ones([64, 64])).numpy(); '
    'libs = [line.split()[-1] for line in open("/proc/self/maps") if "libiomp5" in line]; '
    'omp = ctypes.CDLL(libs[0]).omp_get_max_threads() if libs else None; '
    'print("threads", omp, runtime.math_threads(), os.environ.get(runtime.THREADS_VAR))')


@pytest.mark.parametrize('env, expected', [
    ({}, (runtime.physical_cores(), runtime.physical_cores())),
    ({'PADDLE_LOCAL_SIZE': '2'}, (max(1, runtime.physical_cores() // 2), max(1, runtime.physical_cores() // 2))),
    ({runtime.THREADS_VAR: '3'}, (3, 3)),
    ({runtime.NO_TUNING_VAR: '1'}, (1, None)),  # Paddle's default: one thread, nothing set for children
])
def test_apply_sets_the_math_threads_in_process_and_for_children(env, expected):
    out = run_python(APPLY_AND_REPORT, **env)
    omp, recorded, variable = out.split('threads ')[1].split()[:3]
    if omp != 'None':  # Paddle's own OpenMP runtime (libiomp5) is loaded on x86 Linux builds
        assert int(omp) == expected[0]
    assert int(recorded) == expected[0]
    assert variable == str(expected[1])
    line = out.split('cpu tuning:')[1].splitlines()[0]
    assert ('math threads' in line) == (expected[1] is not None)


# Two DeepLabV3-R50 OS8 training steps (batch 2, 192x192: feature maps of 9 MiB, ASPP column buffers of 42 MiB,
# so the 8 MiB threshold mmaps them under `release` and `reuse` keeps them in the heap): a hash of the weights.
TRAIN_STEPS = '''
import hashlib, numpy, paddle
from paddle_psp.core import runtime
runtime.apply_cpu_tuning(training=True)
from paddle_psp.models import ZooDeepLabV3, ZooResNet50_vd
from paddle_psp.models.losses import ZooCrossEntropyLoss
paddle.seed(0)
model = ZooDeepLabV3(19, ZooResNet50_vd(output_stride=8, multi_grid=(1, 2, 4)))
model.train()
optimizer = paddle.optimizer.Momentum(0.01, momentum=0.9, parameters=model.parameters())
rng = numpy.random.default_rng(0)
images = paddle.to_tensor(rng.uniform(-1, 1, (2, 3, 192, 192)).astype("float32"))
labels = paddle.to_tensor(rng.integers(0, 19, (2, 192, 192)).astype("int64"))
for _ in range(2):
    ZooCrossEntropyLoss()(model(images)[0], labels).backward()
    optimizer.step()
    optimizer.clear_grad()
digest = hashlib.sha256()
for parameter in model.parameters():
    digest.update(parameter.numpy().tobytes())
print("weights", digest.hexdigest())
'''


def test_train_malloc_reuse_trains_the_same_weights_bit_for_bit():
    # The allocator computes nothing, but a kernel that read memory it never wrote would see zeros in fresh
    # pages and old tensors in reused ones: the weights after two steps must not tell the modes apart.
    def weights(mode):
        out = run_python(TRAIN_STEPS, **{runtime.TRAIN_MALLOC_VAR: mode})
        return out.split('weights ')[1].split()[0]
    assert weights('release') == weights('reuse')
