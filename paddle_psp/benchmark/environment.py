"""What the results record about the machine (versions, device, threading settings, peak memory), and
``paddleseg env``, which prints it for a bug report."""
import contextlib
import os
import platform
import sys

import cv2
import numpy as np
import paddle
import paddleseg

import paddle_psp
from paddle_psp.core import runtime
from paddle_psp.core.runtime import THREADS_VAR, math_threads
from paddle_psp.core.machine import (cpu_flags, cpu_name, cpuinfo_field, has_gpu, peak_rss_bytes, read_cpuinfo, reset_peak_rss,
                                     usable_cpus)
from paddle_psp.benchmark.flags import env_parser

# cpuinfo flags worth naming in a report: the instruction sets MKL, oneDNN and the int8 path choose from
REPORTED_ISA = ('avx2', 'fma', 'avx512f', 'avx512_bf16', 'avx512_vnni', 'avx_vnni', 'amx_tile', 'amx_int8',
                'amx_bf16')


def environment(forward):
    """Versions, device and threading settings of this process, and ``forward``: what runs the forward passes
    (:meth:`paddle_psp.benchmark.plan.Settings.forward_kind`)."""
    gpu = has_gpu()
    return {
        'versions': {'python': platform.python_version(), 'paddle': paddle.__version__,
                     'paddle_commit': paddle.version.commit, 'paddleseg': paddleseg.__version__,
                     'paddle_psp': paddle_psp.__version__, 'numpy': np.__version__, 'opencv': cv2.__version__},
        'device': {'paddle': paddle.device.get_device(), 'cpu': cpu_name(), 'logical_cpus': os.cpu_count(),
                   'usable_cpus': usable_cpus(), 'math_threads': math_threads(),
                   'gpu': paddle.device.cuda.get_device_name() if gpu else None},
        'platform': platform.platform(),
        'environment': {key: os.environ.get(key) for key in
                        ('OMP_NUM_THREADS', THREADS_VAR, 'MKL_DEBUG_CPU_TYPE', 'CUDA_VISIBLE_DEVICES')},
        'forward': forward,
    }


def reset_peak_memory():
    """Start measuring peak memory afresh; returns the scope of the numbers :func:`peak_memory` gives."""
    if has_gpu():
        with contextlib.suppress(Exception):
            paddle.device.cuda.reset_max_memory_allocated()
    return reset_peak_rss()


def peak_memory(scope):
    """Peak resident memory (and GPU memory when on a GPU) in bytes."""
    result = {'rss_bytes': peak_rss_bytes(), 'rss_scope': scope}
    if has_gpu():
        result['gpu_allocated_bytes'] = int(paddle.device.cuda.max_memory_allocated())
    return result


def gpu_lines():
    """CUDA, cuDNN and the visible GPUs, as ``key: value`` lines."""
    cuda = paddle.version.cuda() if paddle.device.is_compiled_with_cuda() else 'not compiled with CUDA'
    lines = [f'CUDA: {cuda}', f'cuDNN: {paddle.version.cudnn() if paddle.device.is_compiled_with_cuda() else "-"}']
    if has_gpu():
        names = [paddle.device.cuda.get_device_name(i) for i in range(paddle.device.cuda.device_count())]
        lines.append(f'GPU: {", ".join(names)}')
    else:
        lines.append('GPU: none visible')
    return lines


def cpu_lines(cpuinfo=None):
    """The CPU, its cores and instruction sets, and the CPU tuning in effect, as ``key: value`` lines."""
    cpuinfo = read_cpuinfo() if cpuinfo is None else cpuinfo
    flags = cpu_flags(cpuinfo)
    isa = [name for name in REPORTED_ISA if name in flags]
    lines = [f'CPU: {cpu_name(cpuinfo)} ({os.cpu_count()} logical CPUs, {usable_cpus()} usable, '
             f'{runtime.physical_cores(cpuinfo)} physical cores)',
             f'ISA: {" ".join(isa) or "unknown (no cpuinfo flags)"}; MKL path: {runtime.mkl_cpu_type(cpuinfo)[1]}']
    if runtime.tuning_disabled():
        return lines + [f'tuning: off ({runtime.NO_TUNING_VAR}=1)']
    active = [f'{key}={os.environ[key]}' for key in runtime.TUNING_VARIABLES if key in os.environ]
    lines.append(f'tuning (every verb): {", ".join(active) or "none"}; math threads {math_threads()}')
    for verb, default in runtime.TRAIN_MALLOC_DEFAULTS.items():
        training = runtime.tuning_env(training=True, malloc_default=default)
        malloc = f'{runtime.TRAIN_MALLOC_VAR}: {runtime.train_malloc_mode(default=default)}'
        lines.append(f'tuning ({verb}, in addition; {malloc}): '
                     + (', '.join(f'{k}={v}' for k, v in training.items()) or 'none'))
    return lines


def report_lines():
    """Everything ``paddleseg env`` prints, as ``key: value`` lines."""
    lines = [f'paddle-psp: {paddle_psp.__version__}', f'Python: {platform.python_version()} ({sys.executable})',
             f'platform: {platform.platform()}',
             f'Paddle: {paddle.__version__} (commit {paddle.version.commit[:12]})',
             f'PaddleSeg: {paddleseg.__version__}', f'NumPy: {np.__version__}', f'OpenCV: {cv2.__version__}']
    lines += gpu_lines() + cpu_lines()
    lines += [f'{key}: {os.environ[key]}' for key in ('OMP_NUM_THREADS', 'CUDA_VISIBLE_DEVICES', 'SEG_HOME')
              if key in os.environ]
    return lines


def main(argv=None):
    """``paddleseg env``: print the report; returns 0."""
    env_parser().parse_args(argv)
    print('\n'.join(report_lines()))
    return 0
