"""CPU tuning: environment settings that make Paddle faster (and leaner) here, applied by ``paddleseg``.

Why: Paddle's defaults leave speed on the table on CPU (MKL's generic code path on AMD, one math thread,
a fragmenting allocator while training); the figures that settled each setting, with the CPU, date and
script of each, are in docs/performance.md, "Why the CPU tuning is what it is".

MKL code path: Paddle's bundled MKL runs its generic SSE code path on AMD CPUs; ``MKL_DEBUG_CPU_TYPE``
selects 5 (AVX2), or 7 (AVX-512) only where cpuinfo lists the AVX-512 subsets it needs (6, for Xeon Phi,
dies with SIGILL on AMD). Intel CPUs, on which MKL picks its best path itself, are left alone. MKL reads the
variable at its first computation, not when paddle is imported: calling :func:`apply_cpu_tuning` after
``import paddle`` (which computes nothing) still works, as long as no tensor op has
run yet. Child processes inherit it. ``PADDLE_PSP_NO_TUNING=1`` switches the tuning off; variables the user
already set are never overridden. Paddle Inference with oneDNN (:mod:`paddle_psp.inference.runner`) does
not depend on it: oneDNN picks AVX-512 on AMD by itself.

Memory: ``MALLOC_MMAP_THRESHOLD_=8388608`` (8 MiB, fixed) returns freed tensor blocks to the system instead
of letting glibc's heap fragment, lowering a training step's peak memory for a little more time per step.
glibc reads the variable at process start, so :func:`apply_cpu_tuning` also sets it in-process with
``mallopt`` (and in the environment, for children). It is set for training processes only (``paddleseg
train`` and ``quickstart``: ``training=True``); evaluation, prediction and export, where it costs time and
saves next to nothing, run without it. ``PADDLE_PSP_TRAIN_MALLOC=reuse`` trades the other way, for training
processes that can spare the memory: ``MALLOC_MMAP_MAX_=0`` and ``MALLOC_TRIM_THRESHOLD_`` at its largest keep
every freed block in the heap for the next allocation, so a training step faults in no fresh pages (faster;
the numbers are the same, the allocator does not compute) while its peak RSS grows by the heap's
fragmentation. ``release`` (the default of ``paddleseg train``) is the 8 MiB threshold; ``paddleseg quickstart``
runs ``reuse`` unless told otherwise (:data:`TRAIN_MALLOC_DEFAULTS`).

Threads: Paddle's dygraph CPU kernels run on one thread by default (Paddle writes ``OMP_NUM_THREADS=1`` at
import when it is unset; ``FLAGS_paddle_num_threads`` given in the environment is not applied by Paddle
itself; ``paddle.base.core.set_num_threads(n)`` sets MKL's and OpenMP's count in-process, and a static
program does not reset it). Two threads' weights are not bitwise equal to one thread's (another summation
order) but are deterministic for a fixed count.

So the tuning sets the math threads of every ``paddleseg`` process (:func:`math_threads_setting`): the
physical cores this process may use, divided among the data-parallel ranks on this host
(``PADDLE_LOCAL_SIZE``, set by ``paddle.distributed.launch``; ``PADDLE_TRAINERS_NUM`` where only that is set),
at least 1. A value the user set wins: ``FLAGS_paddle_num_threads``, or ``OMP_NUM_THREADS`` above 1
(``OMP_NUM_THREADS=1`` is what Paddle itself writes at import, so any process started by one that imported
Paddle, a launcher's ranks included, inherits it: it cannot be told from a user's; ``FLAGS_paddle_num_threads=1``
asks for one thread). It is set in-process with ``set_num_threads`` (paddle is already imported: the
``paddleseg`` command imports PaddleSeg, and so Paddle, first, and no op has run) and as ``FLAGS_paddle_num_threads`` in
the environment, which paddle-psp child processes apply in turn. ``PADDLE_PSP_NO_TUNING=1`` leaves Paddle's
default. Training checkpoints record the count (``math_threads`` in ``checkpoint.json``): resuming with
another count warns that the continuation is not bit-identical. The Paddle Inference path sets its own
threads (:func:`physical_cores`).
"""
import ctypes
import ctypes.util
import os
import platform

from paddle_psp.core.errors import env_choice
from paddle_psp.core.log import logger
from paddle_psp.core.machine import CPUINFO, cpu_flags, cpu_vendor, cpuinfo_field, read_cpuinfo, usable_cpus  # noqa: F401 (CPUINFO)

NO_TUNING_VAR = 'PADDLE_PSP_NO_TUNING'
# MKL 2019 (bundled with Paddle) code paths selectable on AMD, best first, with the cpuinfo flags each needs.
MKL_CPU_TYPES = (('7', ('avx512f', 'avx512cd', 'avx512bw', 'avx512dq', 'avx512vl'), 'AVX-512'),
                 ('5', ('avx2', 'fma'), 'AVX2'))

# glibc: allocations of at least this many bytes are mmapped and returned to the system when freed.
MMAP_THRESHOLD_VAR = 'MALLOC_MMAP_THRESHOLD_'
MMAP_THRESHOLD = 8 * 2 ** 20
# PADDLE_PSP_TRAIN_MALLOC: what a training process does with freed blocks: 'release' them to the system
# (the threshold above) or keep them in the heap for 'reuse' (no mmap, no trimming).
TRAIN_MALLOC_VAR = 'PADDLE_PSP_TRAIN_MALLOC'
TRAIN_MALLOC_MODES = ('release', 'reuse')
# The mode of each training verb while the variable is unset: `train` keeps its peak RSS under PaddleSeg's;
# the quickstart's small process spares what reuse costs it, for less time (measured in docs/performance.md).
TRAIN_MALLOC_DEFAULTS = {'train': 'release', 'quickstart': 'reuse'}
REUSE_MALLOC = {'MALLOC_MMAP_MAX_': '0', 'MALLOC_TRIM_THRESHOLD_': str(2 ** 31 - 1)}  # mallopt takes an int
# mallopt parameter numbers (<malloc.h>) of the variables glibc reads at process start
MALLOPT_PARAMS = {MMAP_THRESHOLD_VAR: -3, 'MALLOC_MMAP_MAX_': -4, 'MALLOC_TRIM_THRESHOLD_': -1}
# Paddle's math-library threads (MKL, OpenMP) for dygraph work; local data-parallel ranks, most exact first.
THREADS_VAR = 'FLAGS_paddle_num_threads'
LOCAL_RANKS_VARS = ('PADDLE_LOCAL_SIZE', 'PADDLE_TRAINERS_NUM')
TUNING_VARIABLES = ('MKL_DEBUG_CPU_TYPE', MMAP_THRESHOLD_VAR, *REUSE_MALLOC, THREADS_VAR)

_state = {'logged': False, 'threads': None}


def is_amd_cpu(text=None):
    """Whether the CPU's ``vendor_id`` is ``AuthenticAMD``."""
    return cpu_vendor(read_cpuinfo() if text is None else text) == 'AuthenticAMD'


def mkl_cpu_type(text=None):
    """(MKL_DEBUG_CPU_TYPE value, ISA name) of the best MKL code path the CPU supports, or (None, None)."""
    flags = cpu_flags(read_cpuinfo() if text is None else text)
    for value, needed, isa in MKL_CPU_TYPES:
        if flags.issuperset(needed):
            return value, isa
    return None, None


def physical_cores(text=None):
    """Physical cores this process may run on: distinct (physical id, core id) pairs, capped by affinity.

    Falls back to the number of usable logical CPUs where cpuinfo has no core ids.
    """
    text = read_cpuinfo() if text is None else text
    cores, physical = set(), ''
    for line in text.splitlines():
        key, _, value = line.partition(':')
        key = key.strip()
        if key == 'physical id':
            physical = value.strip()
        elif key == 'core id':
            cores.add((physical, value.strip()))
    usable = usable_cpus()
    return max(1, min(len(cores), usable) if cores else usable)


def tuning_disabled(environ=None):
    """Whether ``PADDLE_PSP_NO_TUNING`` is set to something other than '' or '0'."""
    environ = os.environ if environ is None else environ
    return environ.get(NO_TUNING_VAR, '') not in ('', '0')


def is_glibc():
    """Whether this Python runs on glibc (whose malloc reads ``MALLOC_MMAP_THRESHOLD_``)."""
    return platform.system() == 'Linux' and platform.libc_ver()[0] == 'glibc'


def positive_int(text):
    """``text`` as an int if it is a positive integer, else None."""
    try:
        value = int(str(text).strip())
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def local_ranks(environ=None):
    """Data-parallel ranks on this host, as the launcher says (1 outside ``paddle.distributed.launch``)."""
    environ = os.environ if environ is None else environ
    for key in LOCAL_RANKS_VARS:
        ranks = positive_int(environ.get(key))
        if ranks:
            return ranks
    return 1


def train_malloc_mode(environ=None, default='release'):
    """``PADDLE_PSP_TRAIN_MALLOC``: 'release' or 'reuse' (any case); ``default`` when it is unset or empty.

    Raises:
        UserError: Any other value (named, with the ones expected).
    """
    return env_choice(os.environ if environ is None else environ, TRAIN_MALLOC_VAR, TRAIN_MALLOC_MODES, default)


def math_threads_setting(environ=None, cpuinfo=None):
    """(thread count, where it comes from) for Paddle's math library; (None, reason) when the tuning is off.

    The user's ``FLAGS_paddle_num_threads`` wins, then the user's ``OMP_NUM_THREADS`` above 1 (1 is what
    Paddle writes at import: see the module docstring), else the physical cores divided among the local
    data-parallel ranks, at least 1.

    Args:
        environ (dict, optional): Environment. Default: ``os.environ``.
        cpuinfo (str, optional): cpuinfo text. Default: read from the system.
    """
    environ = os.environ if environ is None else environ
    if tuning_disabled(environ):
        return None, f'{NO_TUNING_VAR}=1'
    user = positive_int(environ.get(THREADS_VAR))
    if user:
        return user, 'set by the user'
    omp = positive_int(environ.get('OMP_NUM_THREADS'))
    if omp and omp > 1:
        return omp, 'from OMP_NUM_THREADS'
    cores, ranks = physical_cores(cpuinfo), local_ranks(environ)
    return max(1, cores // ranks), f'{cores} cores' + (f' / {ranks} local ranks' if ranks > 1 else '')


def tuning_env(environ=None, cpuinfo=None, training=False, malloc_default='release'):
    """The variables the tuning would add to ``environ``: none when disabled or already set.

    ``MKL_DEBUG_CPU_TYPE`` on AMD CPUs with AVX2; ``FLAGS_paddle_num_threads`` (:func:`math_threads_setting`)
    everywhere; on glibc, for a training process only, ``MALLOC_MMAP_THRESHOLD_`` (it lowers a training step's
    peak RSS and costs time everywhere) or, with ``PADDLE_PSP_TRAIN_MALLOC=reuse``, ``MALLOC_MMAP_MAX_`` and
    ``MALLOC_TRIM_THRESHOLD_`` (:func:`train_malloc_mode`; see the module docstring).

    Args:
        environ (dict, optional): Environment to complete. Default: ``os.environ``.
        cpuinfo (str, optional): cpuinfo text. Default: read from the system.
        training (bool, optional): Whether the process trains (``paddleseg train``, ``quickstart``) rather
            than evaluates, predicts or exports. Default: False.
        malloc_default (str, optional): The training mode while ``PADDLE_PSP_TRAIN_MALLOC`` is unset (the
            verb's, :data:`TRAIN_MALLOC_DEFAULTS`). Default: 'release'.

    Returns:
        dict: Variable name -> value, only for variables ``environ`` lacks (or, for
        ``FLAGS_paddle_num_threads``, holds no positive integer in).
    """
    environ = os.environ if environ is None else environ
    if tuning_disabled(environ):
        return {}
    cpuinfo = read_cpuinfo() if cpuinfo is None else cpuinfo
    wanted = {}
    cpu_type = mkl_cpu_type(cpuinfo)[0]
    if is_amd_cpu(cpuinfo) and cpu_type is not None:
        wanted['MKL_DEBUG_CPU_TYPE'] = cpu_type
    if training:
        reuse = train_malloc_mode(environ, malloc_default) == 'reuse'  # a bad value refused wherever one trains
        if is_glibc():
            wanted.update(REUSE_MALLOC if reuse else {MMAP_THRESHOLD_VAR: str(MMAP_THRESHOLD)})
    wanted[THREADS_VAR] = str(math_threads_setting(environ, cpuinfo)[0])
    # a FLAGS_paddle_num_threads that is no count is ignored (Paddle reads it as 1) and replaced
    return {key: value for key, value in wanted.items()
            if key not in environ or (key == THREADS_VAR and positive_int(environ[key]) is None)}


def apply_cpu_tuning(enabled=True, training=False, malloc_default='release'):
    """Apply the tuning to this process and its children, and log what is in effect (one line, once).

    Puts :func:`tuning_env` into ``os.environ``, sets glibc's malloc variables with ``mallopt`` (a
    variable alone only acts at process start) and Paddle's math threads with :func:`set_math_threads` (the
    variable alone does not reach dygraph). Must run before the first paddle computation of the process (see
    the module docstring).

    Args:
        enabled (bool, optional): False (e.g. a ``--no_tuning`` flag) behaves as ``PADDLE_PSP_NO_TUNING=1``
            and also sets that variable so that child processes agree. Default: True.
        training (bool, optional): Whether this process trains (see :func:`tuning_env`). Default: False.
        malloc_default (str, optional): See :func:`tuning_env`. Default: 'release'.

    Returns:
        dict: The variables this call set.
    """
    if not enabled:
        os.environ[NO_TUNING_VAR] = '1'
    added = tuning_env(training=training, malloc_default=malloc_default)
    threads, note = math_threads_setting()  # before `added` is in the environment: whose value it is
    os.environ.update(added)
    for key in MALLOPT_PARAMS.keys() & added.keys():
        _mallopt(key, int(added[key]))
    if threads is not None:
        set_math_threads(threads)
    _log_once(added, note)
    return added


def set_math_threads(count):
    """Run Paddle's math library (MKL, OpenMP) on ``count`` threads in this process, from now on."""
    import paddle  # already imported by paddle_psp; kept out of this module's import for its light helpers
    paddle.base.core.set_num_threads(int(count))
    paddle.set_flags({THREADS_VAR: int(count)})  # what Paddle's own code reads, kept in agreement
    _state['threads'] = int(count)


def math_threads():
    """The math thread count this process computes with: the one :func:`set_math_threads` set, else the one
    Paddle starts with (``OMP_NUM_THREADS``, which Paddle sets to 1 at import when it is unset)."""
    return _state['threads'] or positive_int(os.environ.get('OMP_NUM_THREADS')) or 1


def _mallopt(variable, value):
    """glibc ``mallopt`` of the parameter behind ``variable`` (a :data:`MALLOPT_PARAMS` key); False where that
    is not possible."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        return bool(libc.mallopt(MALLOPT_PARAMS[variable], int(value)))
    except (OSError, AttributeError):
        return False


def _log_once(added, threads_note):
    if _state['logged']:
        return
    _state['logged'] = True
    cpuinfo = read_cpuinfo()
    cores = f'{physical_cores(cpuinfo)} cores'
    if tuning_disabled():
        logger.debug(f'cpu tuning: off ({NO_TUNING_VAR}=1), {cores}')
        return
    active = {key: os.environ[key] for key in TUNING_VARIABLES if key in os.environ}
    cpu = ['AMD' if is_amd_cpu(cpuinfo) else '', mkl_cpu_type(cpuinfo)[1]]
    notes = {'MKL_DEBUG_CPU_TYPE': ', '.join(filter(None, cpu)),
             THREADS_VAR: 'math threads' + (f', {threads_note}' if THREADS_VAR in added else '')}
    settings = []
    for key, value in active.items():
        note = ', '.join(filter(None, [notes.get(key), '' if key in added else 'set by the user']))
        settings.append(f'{key}={value}' + (f' ({note})' if note else ''))
    logger.debug(f'cpu tuning: {", ".join(settings)}, {cores}')
