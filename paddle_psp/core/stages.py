"""Where a verb's start-up time goes: ``--profile`` logs one line per stage, from process start to the first image.

    stages = Stages(enabled=args.profile)
    stages.mark('imports')                  # process start .. now: Python, Paddle, PaddleSeg, paddle_psp
    cfg = load_config(...); stages.mark('config')
    ...
    logger.info(f'[PREDICT] start-up: {stages.summary()}')
"""
import os
import time

_IMPORTED = time.time()


def process_start():
    """The wall-clock time this process started (Linux: from /proc; elsewhere: when this module was imported)."""
    try:
        with open('/proc/self/stat', encoding='ascii') as handle:
            ticks = int(handle.read().rsplit(')', 1)[1].split()[19])  # field 22: start time, clock ticks after boot
        with open('/proc/uptime', encoding='ascii') as handle:
            uptime = float(handle.read().split()[0])
        return time.time() - uptime + ticks / os.sysconf('SC_CLK_TCK')
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORTED


class Stages:
    """Named durations of consecutive stages; the first starts when the process did.

    Args:
        enabled (bool, optional): When False, :meth:`mark` and :meth:`report` do nothing. Default: True.
    """

    def __init__(self, enabled=True):
        self.enabled = enabled
        self.start = self.last = process_start()
        self.durations = []

    def mark(self, name):
        """End the current stage, naming it ``name``."""
        if self.enabled:
            now = time.time()
            self.durations.append((name, now - self.last))
            self.last = now

    def first_call(self, function, name):
        """``function`` wrapped so that its first call ends a stage called ``name``."""
        pending = [True]

        def wrapped(*args, **kwargs):
            result = function(*args, **kwargs)
            if pending:
                pending.clear()
                self.mark(name)
            return result
        wrapped.__dict__.update(getattr(function, '__dict__', {}))
        return wrapped

    def summary(self):
        """``'imports 2.10 s, config 0.05 s, ..., total 4.20 s'``."""
        parts = [f'{name} {seconds:.2f} s' for name, seconds in self.durations]
        return ', '.join(parts + [f'total {self.last - self.start:.2f} s'])
