"""The package logger: one line per message on stderr, PaddleSeg-like format.

Logs go to stderr so that a verb's stdout carries only its results (``$(paddleseg download X)`` is a path).
``PADDLE_PSP_LOG_LEVEL`` (DEBUG, INFO, WARNING, ERROR, any case; default INFO) sets the level, e.g. DEBUG
shows the CPU tuning that ``paddleseg`` applied. The logger is set up at import, where another value means
INFO; the ``paddleseg`` command refuses it before any work (:func:`check_level_setting`). :func:`log_file`
also writes the lines to a file while a block runs (``SAVE_DIR/train.log``, ``val.log``, ``predict.log``).
"""
import contextlib
import logging
import os
import sys

from paddle_psp.core.errors import UserError, env_choice

LEVEL_VAR = 'PADDLE_PSP_LOG_LEVEL'
LEVELS = ('DEBUG', 'INFO', 'WARNING', 'ERROR')


def level_setting(environ=None):
    """The level ``PADDLE_PSP_LOG_LEVEL`` names ('INFO' when it is unset or empty), or None when it names none."""
    try:
        return check_level_setting(environ)
    except UserError:
        return None


def check_level_setting(environ=None):
    """The level ``PADDLE_PSP_LOG_LEVEL`` names ('INFO' when it is unset or empty).

    Raises:
        UserError: A value that names no level (one line).
    """
    return env_choice(os.environ if environ is None else environ, LEVEL_VAR, LEVELS, 'INFO')


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (so redirection and capture work)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


class _FileHandler(logging.FileHandler):
    """Appends to a file created (with its folder) at the first line; a write error ends the file quietly,
    so that a full disk never adds a traceback to the console."""

    def __init__(self, path):
        super().__init__(path, mode='a', encoding='utf-8', delay=True)

    def _open(self):
        os.makedirs(os.path.dirname(os.path.abspath(self.baseFilename)), exist_ok=True)
        return super()._open()

    def emit(self, record):
        try:
            super().emit(record)
        except OSError:  # opening the file failed (a write error reaches handleError)
            self.handleError(record)

    def handleError(self, record):
        logger.removeHandler(self)


FORMATTER = logging.Formatter('%(asctime)s [%(levelname)s] %(message)s', '%Y-%m-%d %H:%M:%S')
logger = logging.getLogger('paddle_psp')
if not logger.handlers:
    _handler = _CurrentStderrHandler()
    _handler.setFormatter(FORMATTER)
    logger.addHandler(_handler)
    logger.setLevel(level_setting() or logging.INFO)
    logger.propagate = False


class _Lines(logging.Handler):
    """Keeps the formatted lines in memory."""

    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))


@contextlib.contextmanager
def log_file(path, when_done=False):
    """Also append the package's log lines to ``path`` while the block runs (the console keeps them too).

    The file (and its folder) is created at the first line, so a block that logs nothing leaves nothing. A
    file that cannot be written is given up quietly: the console has the lines.

    Args:
        path (str): the log file.
        when_done (bool, optional): keep the lines and append them only once the block completes (nothing
            on an error), for a verb whose outputs appear when its work is done (``val``, ``predict``).
            Default: False: each line at once.

    Yields:
        str: ``path``.
    """
    handler = _Lines() if when_done else _FileHandler(path)
    handler.setFormatter(FORMATTER)
    logger.addHandler(handler)
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        handler.close()
    if when_done and handler.lines:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, 'a', encoding='utf-8') as file:
                file.write('\n'.join(handler.lines) + '\n')
        except OSError:
            pass
