"""The package logger: one line per message on stderr, PaddleSeg-like format.

Logs go to stderr so that a verb's stdout carries only its results (``$(paddleseg download X)`` is a path).
``PADDLE_PSP_LOG_LEVEL`` (DEBUG, INFO, WARNING, ERROR; default INFO) sets the level, e.g. DEBUG shows the
CPU tuning that ``paddleseg`` applied.
"""
import logging
import os
import sys

LEVEL_VAR = 'PADDLE_PSP_LOG_LEVEL'


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (so redirection and capture work)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


logger = logging.getLogger('paddle_psp')
if not logger.handlers:
    _handler = _CurrentStderrHandler()
    _handler.setFormatter(logging.Formatter('%(asctime)s [%(levelname)s] %(message)s', '%Y-%m-%d %H:%M:%S'))
    logger.addHandler(_handler)
    _level = os.environ.get(LEVEL_VAR, 'INFO').upper()
    logger.setLevel(_level if _level in ('DEBUG', 'INFO', 'WARNING', 'ERROR') else logging.INFO)
    logger.propagate = False
