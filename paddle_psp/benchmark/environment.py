"""What the results record about the machine: versions, device, threading settings and peak memory."""
import contextlib
import os
import platform

import cv2
import numpy as np
import paddle
import paddleseg

import paddle_psp
from paddle_psp.core.runtime import THREADS_VAR, math_threads
from paddle_psp.core.util import cpu_name, has_gpu, peak_rss_bytes, reset_peak_rss, usable_cpus


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
