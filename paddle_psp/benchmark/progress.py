"""The resumable per-image records of a benchmark: one JSON-lines file per target, fsynced line by line.

``<save_dir>/progress/<target>.jsonl`` starts with a header holding the fingerprint of everything the
records depend on (config, weights file, dataset, plan); then one line per scored image with its confusion-
matrix increments per column and its timings. A run killed at any point continues with ``--resume``
where it stopped, each image counted once.
"""
import contextlib
import json
import os

import numpy as np

from paddle_psp.core import atomic
from paddle_psp.core.errors import UserError
from paddle_psp.core.files import LockBusy, file_lock

PROGRESS_DIR = 'progress'
FORMAT_VERSION = 1


def progress_path(save_dir, name):
    """The progress file of the target called ``name`` in ``save_dir``."""
    return os.path.join(save_dir, PROGRESS_DIR, name + '.jsonl')


class ProgressLog:
    """The per-image records of one target: a JSON-lines file, header first, one line per scored image.

    A line counts only once it is complete (newline-terminated); each is written with one ``write`` and
    fsynced before the next image starts. A torn last line (a kill mid-write) is cut off on reopening.
    An exclusive lock keeps two processes from writing the same file.

    Args:
        path (str): The ``.jsonl`` file.
        fingerprint (dict): What the records depend on; reopening with another fingerprint is refused.
    """

    def __init__(self, path, fingerprint):
        self.path = path
        self.fingerprint = fingerprint
        self._file = None

    def open(self):
        """Lock the file, recover it, and return the records already in it (index -> record).

        Raises:
            UserError: Another process holds the file, it was made with other settings, or it is corrupt.
        """
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        created = not os.path.exists(self.path)
        self._file = open(self.path, 'a+b')
        try:
            self._lock()
            if created:
                atomic.fsync_path(os.path.dirname(self.path))
            lines = self._complete_lines()
            if not lines:
                self._append({'fingerprint': self.fingerprint, 'format': FORMAT_VERSION})
                return {}
            self._check_header(lines[0])
            return self._records(lines[1:])
        except BaseException:
            self.close()
            raise

    def _lock(self):
        self._held = contextlib.ExitStack()
        try:
            self._held.enter_context(file_lock(self.path + '.lock', wait=False))
        except LockBusy:
            raise UserError(f'{self.path}: another benchmark process is writing it; expected one process per '
                            'output directory') from None

    def _complete_lines(self):
        """The newline-terminated lines; a torn tail is truncated away (and fsynced)."""
        self._file.seek(0)
        data = self._file.read()
        complete = data[:data.rfind(b'\n') + 1]
        if len(complete) != len(data):
            self._file.truncate(len(complete))
            os.fsync(self._file.fileno())
        return complete.splitlines()

    def _check_header(self, line):
        header = self._parse(line, 1)
        recorded = header.get('fingerprint') if isinstance(header, dict) else None
        if recorded != json.loads(json.dumps(self.fingerprint)):
            differing = sorted(k for k in set(recorded or {}) | set(self.fingerprint)
                               if (recorded or {}).get(k) != json.loads(json.dumps(self.fingerprint.get(k))))
            raise UserError(f'{self.path}: was recorded with other settings ({", ".join(differing)} differ); '
                            'expected the same config, checkpoint and options to --resume, or --overwrite')

    def _records(self, lines):
        records = {}
        for number, line in enumerate(lines, 2):
            record = self._parse(line, number)
            records.setdefault(int(record['index']), record)
        return records

    def _parse(self, line, number):
        try:
            return json.loads(line)
        except ValueError:
            raise UserError(f'{self.path}:{number}: not a JSON record (the file was edited or damaged); '
                            'expected --overwrite to start this entry again') from None

    def append(self, record):
        """Write one record durably."""
        self._append(record)

    def _append(self, record):
        self._file.write((json.dumps(record, separators=(',', ':')) + '\n').encode())
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self):
        """Release the lock and close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self._held.close()


def encode_confusion(matrix):
    """A (C, C) count matrix as ``[[flat indices of non-zero cells], [their counts]]``."""
    flat = np.asarray(matrix).reshape(-1)
    nonzero = np.flatnonzero(flat)
    return [nonzero.tolist(), flat[nonzero].tolist()]


def decode_confusion(encoded, num_classes):
    """Inverse of :func:`encode_confusion`."""
    flat = np.zeros(num_classes * num_classes, np.int64)
    flat[np.asarray(encoded[0], np.int64)] = np.asarray(encoded[1], np.int64)
    return flat.reshape(num_classes, num_classes)
