"""What the results record about the machine: versions, device, threading settings and peak memory."""
import contextlib
import os
import platform
import resource

import cv2
import numpy as np
import paddle
import paddleseg

import paddle_psp
from paddle_psp import runtime


def environment(dygraph):
    """Versions, device and threading settings of this process."""
    return {
        'versions': {'python': platform.python_version(), 'paddle': paddle.__version__,
                     'paddle_commit': paddle.version.commit, 'paddleseg': paddleseg.__version__,
                     'paddle_psp': paddle_psp.__version__, 'numpy': np.__version__, 'opencv': cv2.__version__},
        'device': {'paddle': paddle.device.get_device(), 'cpu': _cpu_model(), 'logical_cpus': os.cpu_count(),
                   'usable_cpus': len(os.sched_getaffinity(0)),
                   'gpu': paddle.device.cuda.get_device_name() if _on_gpu() else None},
        'platform': platform.platform(),
        'environment': {key: os.environ.get(key) for key in
                        ('OMP_NUM_THREADS', 'MKL_DEBUG_CPU_TYPE', 'CUDA_VISIBLE_DEVICES')},
        'forward': 'dygraph' if dygraph else 'fast_forward',
    }


def reset_peak_memory():
    """Start measuring peak memory afresh; returns the scope of the numbers :func:`peak_memory` gives."""
    if _on_gpu():
        with contextlib.suppress(Exception):
            paddle.device.cuda.reset_max_memory_allocated()
    try:
        with open('/proc/self/clear_refs', 'w') as file:
            file.write('5')  # resets VmHWM (Linux)
        return 'entry'
    except OSError:
        return 'process'


def peak_memory(scope):
    """Peak resident memory (and GPU memory when on a GPU) in bytes."""
    result = {'rss_bytes': _peak_rss(), 'rss_scope': scope}
    if _on_gpu():
        result['gpu_allocated_bytes'] = int(paddle.device.cuda.max_memory_allocated())
    return result


def _on_gpu():
    return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def _cpu_model():
    return runtime.cpuinfo_field('model name') or platform.processor() or None


def _peak_rss():
    with contextlib.suppress(OSError):
        with open('/proc/self/status') as file:
            for line in file:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
