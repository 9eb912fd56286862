"""The package logger: one line per message on stderr, PaddleSeg-like format.

Logs go to stderr so that a verb's stdout carries only its results (``$(paddleseg download X)`` is a path).
"""
import logging
import sys


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
    logger.setLevel(logging.INFO)
    logger.propagate = False
