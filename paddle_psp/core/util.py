"""Small helpers used across the package, one copy each: file digests, durations, peak memory, CPU and GPU
facts, an inter-process file lock and a progress display.

Everything here works where ``/proc``, ``fcntl`` or ``os.sched_getaffinity`` do not exist (macOS, Windows):
the Linux-only sources are read when present and fall back to portable ones otherwise.
"""
import contextlib
import hashlib
import os
import platform
import sys
import time

import filelock

from paddle_psp.core.log import logger

CPUINFO = '/proc/cpuinfo'
CHUNK_BYTES = 1 << 20


# ----------------------------------------------------------------------------------------------- output
@contextlib.contextmanager
def quiet_stdout():
    """File descriptor 1 goes to the null device for the duration, so that C++ libraries writing to it
    directly (past Python's ``sys.stdout``) print nothing."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, 'w') as null:
        os.dup2(null.fileno(), 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


# ----------------------------------------------------------------------------------------------- files
def sha256_file(path, chunk_bytes=CHUNK_BYTES):
    """SHA-256 (lower-case hex) of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(chunk_bytes), b''):
            digest.update(block)
    return digest.hexdigest()


class LockBusy(Exception):
    """:func:`file_lock` with ``wait=False`` found the lock held by another process."""


@contextlib.contextmanager
def file_lock(path, wait=True, on_wait=None):
    """Hold an exclusive inter-process lock on ``path`` (a lock file, created if missing) for a ``with`` block.

    Args:
        path (str): The lock file; keep it apart from the data it guards (the lock may truncate it).
        wait (bool, optional): Block until the lock is free; False raises :class:`LockBusy` instead.
            Default: True.
        on_wait (callable, optional): Called once, without arguments, before blocking on a held lock.

    Raises:
        LockBusy: ``wait`` is False and another process holds the lock.
    """
    lock = filelock.FileLock(os.fspath(path))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        if not wait:
            raise LockBusy(path) from None
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


# ----------------------------------------------------------------------------------------------- time
def format_duration(seconds):
    """``seconds`` as ``HH:MM:SS`` (rounded to whole seconds; hours grow past 99)."""
    seconds = int(round(seconds))
    return f'{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


# ----------------------------------------------------------------------------------------------- memory
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


# ----------------------------------------------------------------------------------------------- CPU
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


# ----------------------------------------------------------------------------------------------- GPU
def has_gpu():
    """Whether this Paddle build has CUDA and sees at least one GPU."""
    import paddle  # lazy: core stays importable (and cheap) without paddle
    return bool(paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0)


# ----------------------------------------------------------------------------------------------- progress
def lines_every(total, lines=20):
    """Units between the log lines of a :class:`Progress` without a terminal: about ``lines`` lines in all."""
    return max(1, (total or 0) // lines)


class Progress:
    """Progress of a long job with its speed and ETA.

    A tqdm bar on ``stream`` when it is a terminal (``LABEL [####....] DONE/TOTAL S s/UNIT ETA HH:MM:SS``);
    otherwise one log line every ``every`` units (none when ``every`` is None). Usable as a context manager.

    Args:
        label (str): What is being done.
        total (int|None): Units in all (None: unknown).
        done (int, optional): Units done before this display started (e.g. by an interrupted run); the
            speed counts only the new ones. Default: 0.
        every (int, optional): Units between log lines when ``stream`` is not a terminal. Default: None.
        unit (str, optional): Name of one unit, e.g. ``'image'``. Default: ``'item'``.
        scale (int, optional): Units per displayed unit, e.g. ``2 ** 20`` to count bytes shown as MiB.
            Default: 1.
        log_prefix (str, optional): Text before the label in log lines, e.g. ``'[BENCHMARK] '``. Default: ''.
        stream (file, optional): Default: ``sys.stderr`` (at construction).
    """

    def __init__(self, label, total, done=0, every=None, unit='item', scale=1, log_prefix='', stream=None):
        self.label, self.total, self.start_done, self.done = label, total, done, done
        self.every, self.unit, self.scale, self.log_prefix = every, unit, scale, log_prefix
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(self.stream is not None and hasattr(self.stream, 'isatty') and self.stream.isatty())
        self.start = time.time()
        self._bar = None
        if self.tty:
            from tqdm import tqdm  # lazy: only a terminal draws a bar
            self._bar = tqdm(total=total, initial=done, file=self.stream, desc=label, ascii='.#',
                             bar_format=self._bar_format(), mininterval=0.1, dynamic_ncols=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def advance(self, amount=1):
        """``amount`` more units are done."""
        self.update(self.done + amount)

    def update(self, done):
        """``done`` units of ``total`` are done."""
        previous, self.done = self.done, done
        if self._bar is not None:
            self._bar.bar_format = self._bar_format()
            self._bar.update(done - previous)
        elif self.every and ((done - self.start_done) // self.every > (previous - self.start_done) // self.every
                             or done == self.total):
            logger.info(f'{self.log_prefix}{self.label}: {self._stats()}')

    def close(self):
        """End the bar's line (on a terminal)."""
        if self._bar is not None:
            self._bar.bar_format = self._bar_format()
            self._bar.close()
            self._bar = None

    def _bar_format(self):
        return ('{desc} [{bar:24}] ' if self.total else '{desc} ') + self._stats().replace('{', '{{').replace('}', '}}')

    def _stats(self):
        """``DONE/TOTAL S s/UNIT ETA HH:MM:SS`` for the bar; ``DONE/TOTAL UNITs, S s/UNIT, ETA ...`` to log."""
        new = (self.done - self.start_done) / self.scale
        per_unit = (time.time() - self.start) / new if new else 0.0
        amount = self._amount(self.done) + (f'/{self._amount(self.total)}' if self.total else '')
        parts = [amount if self.tty else f'{amount} {self.unit}s', f'{per_unit:.2f} s/{self.unit}']
        if self.total:
            parts.append(f'ETA {format_duration(per_unit * (self.total - self.done) / self.scale)}')
        return (' ' if self.tty else ', ').join(parts)

    def _amount(self, value):
        return str(value) if self.scale == 1 else f'{value / self.scale:.1f}'
