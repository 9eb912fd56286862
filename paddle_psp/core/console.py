"""What a run shows on the terminal: the one progress display, durations, and C++ output silenced."""
import contextlib
import os
import sys
import time

from paddle_psp.core.log import logger


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


def format_duration(seconds):
    """``seconds`` as ``HH:MM:SS`` (rounded to whole seconds; hours grow past 99)."""
    seconds = int(round(seconds))
    return f'{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


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
