"""CPU tuning: environment settings that make Paddle faster (and leaner) here, applied by ``paddleseg``.

Measured on a 2-core AMD EPYC (family 26, Zen 5) with Paddle 3.3.1 (``benchmarks/speed.py``): Paddle's
bundled MKL (2019) runs its generic SSE code path on AMD CPUs. ``MKL_DEBUG_CPU_TYPE`` selects its code
path instead: 5 (AVX2) makes dygraph convolutions ~2.3x faster, 7 (AVX-512) ~4x (forward and training
step; fp32 either way). 7 is used only where cpuinfo lists the AVX-512 subsets it needs (6, for Xeon Phi,
dies with SIGILL on AMD). Intel CPUs, on which MKL picks its best path itself, are left alone.

MKL reads the variable at its first computation, not when paddle is imported: calling
:func:`apply_cpu_tuning` after ``import paddle_psp`` (which imports paddle and computes nothing) still
works, as long as no tensor op has run yet (measured: same speed as setting it in the shell). Child
processes inherit it. ``PADDLE_PSP_NO_TUNING=1`` switches the tuning off; variables the user already set
are never overridden. Paddle Inference with oneDNN (:mod:`paddle_psp.inference.predictor`) does not depend
on it: oneDNN picks AVX-512 on AMD by itself.

Memory: glibc's malloc serves freed-and-reallocated tensors below its adaptive mmap threshold (up to
32 MiB) from the heap, which fragments: with MKL's AVX-512 path a training step peaked above PaddleSeg's
default (PSPNet R50 512x512 batch 2: 4.71 vs 4.62 GiB). ``MALLOC_MMAP_THRESHOLD_=8388608`` (8 MiB, fixed)
returns those blocks to the system instead: peak RSS 4.27 GiB (DeepLabV3: 3.38 vs 3.90), for 6-9 % more
time per training step (page faults) and ~15 % on the dygraph forward; the Paddle Inference path is
unchanged. (16 MiB saved only 0.1-0.2 GiB.) glibc reads the variable at process start, so
:func:`apply_cpu_tuning` also sets it in-process with ``mallopt`` (and in the environment, for children).

It is set for training processes only (``paddleseg train`` and ``quickstart``: ``training=True``). On the
2-core Intel Xeon (family 6, model 207), 2026-11-29, ``benchmarks/tuning_ab.py`` (interleaved, median of 3
children each; load average 3-7, so compared by CPU time, user + system): the dygraph evaluation forward
(512x512) takes 11 % more CPU time with it for our DeepLabV3 R50 OS8 and 17 % for PaddleSeg's own (6 % and
5 % for PSPNet; system time, page faults, rises from ~1.0 to 1.5-1.9 s of ~5 s), and saves only 0.1 GiB of
peak RSS (1.16 -> 1.04 GiB). In the same environment our DeepLabV3 forward takes 5 % less CPU
time than PaddleSeg's, so its slower row in ``speed.py`` (tuned against PaddleSeg's default environment)
was this variable, not the model. A DeepLabV3 training step (512x512, batch 2) takes 10 % more CPU time
with it and peaks at 3.34 instead of 3.83 GiB (PaddleSeg's default: 3.81); PSPNet's (one child each)
5 % more, 3.96 instead of 4.24 GiB (PaddleSeg's: 4.60): the trade the AMD figures show.
Evaluation, prediction and export, where it costs time and saves next to nothing, run without it.

Threads: Paddle sets ``OMP_NUM_THREADS=1`` at import unless it is set. Raising it to the core count did
not speed up dygraph forward or training here (Paddle's CPU convolution does not parallelise), so it is
left alone; the Paddle Inference path runs on :func:`physical_cores` threads.
"""
import ctypes
import ctypes.util
import os
import platform

from paddle_psp.core.log import logger
from paddle_psp.core.util import CPUINFO, cpu_vendor, cpuinfo_field, read_cpuinfo, usable_cpus  # noqa: F401 (CPUINFO)

NO_TUNING_VAR = 'PADDLE_PSP_NO_TUNING'
# MKL 2019 (bundled with Paddle) code paths selectable on AMD, best first, with the cpuinfo flags each needs.
MKL_CPU_TYPES = (('7', ('avx512f', 'avx512cd', 'avx512bw', 'avx512dq', 'avx512vl'), 'AVX-512'),
                 ('5', ('avx2', 'fma'), 'AVX2'))

# glibc: allocations of at least this many bytes are mmapped and returned to the system when freed.
MMAP_THRESHOLD_VAR = 'MALLOC_MMAP_THRESHOLD_'
MMAP_THRESHOLD = 8 * 2 ** 20
M_MMAP_THRESHOLD = -3  # mallopt parameter number, <malloc.h>
TUNING_VARIABLES = ('MKL_DEBUG_CPU_TYPE', MMAP_THRESHOLD_VAR)

_state = {'logged': False}


def is_amd_cpu(text=None):
    """Whether the CPU's ``vendor_id`` is ``AuthenticAMD``."""
    return cpu_vendor(read_cpuinfo() if text is None else text) == 'AuthenticAMD'


def mkl_cpu_type(text=None):
    """(MKL_DEBUG_CPU_TYPE value, ISA name) of the best MKL code path the CPU supports, or (None, None)."""
    flags = set(cpuinfo_field('flags', read_cpuinfo() if text is None else text).split())
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


def tuning_env(environ=None, cpuinfo=None, training=False):
    """The variables the tuning would add to ``environ``: none when disabled or already set.

    ``MKL_DEBUG_CPU_TYPE`` on AMD CPUs with AVX2; ``MALLOC_MMAP_THRESHOLD_`` on glibc for a training
    process only (it lowers a training step's peak RSS and costs time everywhere; see the module docstring).

    Args:
        environ (dict, optional): Environment to complete. Default: ``os.environ``.
        cpuinfo (str, optional): cpuinfo text. Default: read from the system.
        training (bool, optional): Whether the process trains (``paddleseg train``, ``quickstart``) rather
            than evaluates, predicts or exports. Default: False.

    Returns:
        dict: Variable name -> value, only for variables ``environ`` lacks.
    """
    environ = os.environ if environ is None else environ
    if tuning_disabled(environ):
        return {}
    cpuinfo = read_cpuinfo() if cpuinfo is None else cpuinfo
    wanted = {}
    cpu_type = mkl_cpu_type(cpuinfo)[0]
    if is_amd_cpu(cpuinfo) and cpu_type is not None:
        wanted['MKL_DEBUG_CPU_TYPE'] = cpu_type
    if training and is_glibc():
        wanted[MMAP_THRESHOLD_VAR] = str(MMAP_THRESHOLD)
    return {key: value for key, value in wanted.items() if key not in environ}


def apply_cpu_tuning(enabled=True, training=False):
    """Apply the tuning to this process and its children, and log what is in effect (one line, once).

    Puts :func:`tuning_env` into ``os.environ`` and sets glibc's mmap threshold with ``mallopt`` (the
    variable alone only acts at process start). Must run before the first paddle computation of the
    process (see the module docstring).

    Args:
        enabled (bool, optional): False (e.g. a ``--no_tuning`` flag) behaves as ``PADDLE_PSP_NO_TUNING=1``
            and also sets that variable so that child processes agree. Default: True.
        training (bool, optional): Whether this process trains (see :func:`tuning_env`). Default: False.

    Returns:
        dict: The variables this call set.
    """
    if not enabled:
        os.environ[NO_TUNING_VAR] = '1'
    added = tuning_env(training=training)
    os.environ.update(added)
    if MMAP_THRESHOLD_VAR in added:
        _set_mmap_threshold(int(added[MMAP_THRESHOLD_VAR]))
    _log_once(added)
    return added


def _set_mmap_threshold(size):
    """glibc ``mallopt(M_MMAP_THRESHOLD, size)``; False where that is not possible."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        return bool(libc.mallopt(M_MMAP_THRESHOLD, int(size)))
    except (OSError, AttributeError):
        return False


def _log_once(added):
    if _state['logged']:
        return
    _state['logged'] = True
    cpuinfo = read_cpuinfo()
    cores = f'{physical_cores(cpuinfo)} cores'
    if tuning_disabled():
        logger.debug(f'cpu tuning: off ({NO_TUNING_VAR}=1), {cores}')
        return
    active = {key: os.environ[key] for key in TUNING_VARIABLES if key in os.environ}
    if not active:
        logger.debug(f'cpu tuning: none needed ({cpu_vendor(cpuinfo) or "unknown CPU"}), {cores}')
        return
    cpu = ['AMD' if is_amd_cpu(cpuinfo) else '', mkl_cpu_type(cpuinfo)[1]]
    notes = {'MKL_DEBUG_CPU_TYPE': ', '.join(filter(None, cpu))}
    settings = []
    for key, value in active.items():
        note = ', '.join(filter(None, [notes.get(key), '' if key in added else 'set by the user']))
        settings.append(f'{key}={value}' + (f' ({note})' if note else ''))
    logger.debug(f'cpu tuning: {", ".join(settings)}, {cores}')
