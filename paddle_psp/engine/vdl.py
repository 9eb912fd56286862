"""VisualDL scalars under PaddleSeg's tags: one record file per run, continued (never duplicated) on resume.

A fresh run writes a new ``vdlrecords.<time>.<run id>.log`` (VisualDL shows a folder's newest file, so a
fresh run never joins another run's curve). A resumed run first cuts its file back to the steps up to the
checkpoint it resumes from (the killed run may have logged past it), then appends: its curves have no
duplicate and no backward steps.
"""
import contextlib
import glob
import os
import struct
import sys
import time

from paddle_psp.core import atomic

RECORD_PATTERN = 'vdlrecords.*.log'
HEADER = struct.Struct('<Q')  # VisualDL's record framing: a little-endian uint64 length, then the bytes


def new_record_name(run_id):
    """The record file name of a fresh run (sorts after older runs' files, as VisualDL picks the last)."""
    return f'vdlrecords.{int(time.time()):010d}.{run_id}.log'


def newest_record_name(logdir):
    """The name of the newest ``vdlrecords.*.log`` in ``logdir``, or None."""
    existing = sorted(glob.glob(os.path.join(logdir, RECORD_PATTERN)), key=os.path.getmtime)
    return os.path.basename(existing[-1]) if existing else None


def truncate_records(path, last_step):
    """Rewrite record file ``path`` without the records of steps after ``last_step`` (and without a torn
    last record); atomic, so a kill leaves the old or the new file. A missing file is left missing."""
    from visualdl.proto import record_pb2  # slow import, only when used
    if not os.path.isfile(path):
        return
    with open(path, 'rb') as file:
        data = file.read()
    kept, offset = [], 0
    while offset + HEADER.size <= len(data):
        (length,) = HEADER.unpack_from(data, offset)
        end = offset + HEADER.size + length
        if end > len(data):
            break  # torn by a kill
        record = record_pb2.Record()
        record.ParseFromString(data[offset + HEADER.size:end])
        if all(value.id <= last_step for value in record.values):
            kept.append(data[offset:end])
        offset = end
    kept = b''.join(kept)
    if len(kept) != len(data):
        atomic.write_bytes(path, kept)


class ScalarWriter:
    """Write scalars to ``logdir/file_name`` for ``visualdl --logdir logdir``; the file is opened on the
    first scalar (and appended to when it exists).

    Args:
        logdir (str): The training ``save_dir``.
        file_name (str): The run's record file name (see :func:`new_record_name`).
    """

    def __init__(self, logdir, file_name):
        self.logdir = logdir
        self.file_name = file_name
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
            with contextlib.redirect_stdout(sys.stderr):  # its notes are logs; stdout carries results
                self._writer = LogWriter(logdir=self.logdir, file_name=self.file_name)
        return self._writer
