"""The package logger: one line per message on stdout, PaddleSeg-like format."""
import logging
import sys



class _CurrentStdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time (so redirection and capture work)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _):
        pass


logger = logging.getLogger('paddle_psp')
if not logger.handlers:
    _handler = _CurrentStdoutHandler()
    _handler.setFormatter(logging.Formatter('%(asctime)s [%(levelname)s] %(message)s', '%Y-%m-%d %H:%M:%S'))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
