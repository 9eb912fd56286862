"""The progress display of a benchmark run: a bar on a terminal, a log line every N images otherwise."""
import sys
import time

from paddle_psp.log import logger


class ProgressBar:
    """Progress with ETA: a bar redrawn on stderr when it is a terminal, else a log line every N images.

    Args:
        label (str): What is being scored.
        total (int): Images to score in all.
        done (int): Images already scored (by an earlier, interrupted run).
        every (int): Images between log lines when stderr is not a terminal.
        stream (file, optional): Default: ``sys.stderr``.
    """

    def __init__(self, label, total, done, every, stream=None):
        self.label, self.total, self.start_done, self.every = label, total, done, every
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, 'isatty') and self.stream.isatty()
        self.start = time.time()

    def update(self, done):
        """``done`` images of ``total`` are scored."""
        new = done - self.start_done
        elapsed = time.time() - self.start
        per_image = elapsed / new if new else 0.0
        eta = format_duration(per_image * (self.total - done))
        if self.tty:
            width = 24
            filled = int(width * done / max(self.total, 1))
            self.stream.write(f'\r{self.label} [{"#" * filled}{"." * (width - filled)}] {done}/{self.total} '
                              f'{per_image:.2f} s/image ETA {eta}  ')
            self.stream.flush()
        elif new % self.every == 0 or done == self.total:
            logger.info(f'[BENCHMARK] {self.label}: {done}/{self.total} images, {per_image:.2f} s/image, '
                        f'ETA {eta}')

    def close(self):
        """End the bar's line."""
        if self.tty:
            self.stream.write('\n')
            self.stream.flush()


def format_duration(seconds):
    """``HH:MM:SS``."""
    seconds = int(round(seconds))
    return f'{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


def show_progress(label, total, done, every):
    """The progress display of one target's scoring (the one place the benchmark creates one).

    Args:
        label (str): What is being scored.
        total (int): Images to score in all.
        done (int): Images already scored.
        every (int): Images between log lines when stderr is not a terminal.

    Returns:
        An object with ``update(done)`` and ``close()``.
    """
    return ProgressBar(label, total, done, every)
