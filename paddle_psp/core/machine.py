"""Facts about this machine: CPU (model, vendor, cpuinfo fields, usable CPUs), load average, GPU, peak memory.

Everything here works where ``/proc`` or ``os.sched_getaffinity`` do not exist (macOS, Windows): the
Linux-only sources are read when present and fall back to portable ones otherwise.
"""
import contextlib
import os
import platform
import sys

CPUINFO = '/proc/cpuinfo'


def read_cpuinfo(path=CPUINFO):
    """The text of ``/proc/cpuinfo`` ('' where there is none, e.g. macOS or Windows)."""
    try:
        with open(path, encoding='utf-8', errors='replace') as handle:
            return handle.read()
    except OSError:
        return ''


def cpuinfo_field(name, text=None):
    """The first value of field ``name`` in cpuinfo ``text`` (read from the system by default), or ''."""
    text = read_cpuinfo() if text is None else text
    for line in text.splitlines():
        key, _, value = line.partition(':')
        if key.strip() == name:
            return value.strip()
    return ''


def cpu_flags(text=None):
    """The CPU's instruction-set flags (cpuinfo ``flags``) as a set; empty where unknown."""
    return set(cpuinfo_field('flags', text).split())


def cpu_name(text=None):
    """The CPU's model name (cpuinfo ``model name``, else :func:`platform.processor`), or None."""
    return cpuinfo_field('model name', text) or platform.processor() or None


def cpu_vendor(text=None):
    """The CPU's cpuinfo ``vendor_id`` (e.g. ``AuthenticAMD``, ``GenuineIntel``), or '' where unknown."""
    return cpuinfo_field('vendor_id', text)


def usable_cpus():
    """Logical CPUs this process may run on: its affinity mask where the OS has one, else the CPU count."""
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average_text():
    """The 1-, 5- and 15-minute load averages, e.g. ``'1.02 0.98 0.75'`` (benchmarks print it beside timings)."""
    return ' '.join(f'{value:.2f}' for value in os.getloadavg())


def has_gpu():
    """Whether this Paddle build has CUDA and sees at least one GPU."""
    import paddle  # lazy: core stays importable (and cheap) without paddle
    return bool(paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0)


def reset_peak_rss():
    """Restart this process' peak-RSS count where Linux allows it.

    Returns:
        str: ``'entry'`` when the count was reset (so :func:`peak_rss_bytes` covers what follows), else
        ``'process'`` (it covers the whole life of the process).
    """
    try:
        with open('/proc/self/clear_refs', 'w') as handle:
            handle.write('5')  # resets VmHWM
        return 'entry'
    except OSError:
        return 'process'


def peak_rss_bytes():
    """This process' peak resident set size in bytes.

    ``VmHWM`` from ``/proc`` where there is one (it belongs to the address space ``exec`` created, while
    ``ru_maxrss`` survives ``fork`` + ``exec`` and so counts the parent's peak too), else ``ru_maxrss``.
    """
    with contextlib.suppress(OSError):
        with open('/proc/self/status', encoding='ascii') as status:
            for line in status:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
    import resource  # POSIX only: imported where it is needed
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == 'darwin' else peak * 1024  # bytes on macOS, KiB elsewhere
