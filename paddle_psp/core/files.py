"""Files: a file's SHA-256 and an inter-process file lock (portable: ``filelock`` where ``fcntl`` is missing)."""
import contextlib
import hashlib
import os

import filelock

CHUNK_BYTES = 1 << 20


def sha256_file(path, chunk_bytes=CHUNK_BYTES):
    """SHA-256 (lower-case hex) of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(chunk_bytes), b''):
            digest.update(block)
    return digest.hexdigest()


class LockBusy(Exception):
    """:func:`file_lock` with ``wait=False`` found the lock held by another process."""


@contextlib.contextmanager
def file_lock(path, wait=True, on_wait=None):
    """Hold an exclusive inter-process lock on ``path`` (a lock file, created if missing) for a ``with`` block.

    Args:
        path (str): The lock file; keep it apart from the data it guards (the lock may truncate it).
        wait (bool, optional): Block until the lock is free; False raises :class:`LockBusy` instead.
            Default: True.
        on_wait (callable, optional): Called once, without arguments, before blocking on a held lock.

    Raises:
        LockBusy: ``wait`` is False and another process holds the lock.
    """
    lock = filelock.FileLock(os.fspath(path))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        if not wait:
            raise LockBusy(path) from None
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
