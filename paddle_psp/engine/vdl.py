"""VisualDL scalars under PaddleSeg's tags, appended to the run's existing record file when resuming."""
import glob
import os

RECORD_PATTERN = 'vdlrecords.*.log'


class ScalarWriter:
    """Write scalars to ``logdir`` for ``visualdl --logdir logdir``; the file is opened on the first scalar.

    Resuming in the same ``logdir`` appends to the newest ``vdlrecords.*.log`` there instead of starting a
    second run file, so the curves continue.

    Args:
        logdir (str): The training ``save_dir``.
    """

    def __init__(self, logdir):
        self.logdir = logdir
        self._writer = None

    def add_scalars(self, scalars, step):
        """Write ``{tag: value}`` at ``step``."""
        writer = self._open()
        for tag, value in scalars.items():
            writer.add_scalar(tag=tag, step=int(step), value=float(value))

    def flush(self):
        """Push buffered records to disk."""
        if self._writer is not None:
            self._writer.flush()

    def close(self):
        """Flush and close the file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _open(self):
        if self._writer is None:
            from visualdl import LogWriter  # slow import, only when used
            existing = sorted(glob.glob(os.path.join(self.logdir, RECORD_PATTERN)), key=os.path.getmtime)
            file_name = os.path.basename(existing[-1]) if existing else ''
            self._writer = LogWriter(logdir=self.logdir, file_name=file_name)
        return self._writer
