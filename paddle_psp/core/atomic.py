"""Write files so that a reader never sees a half-written one."""
import contextlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    The rename is atomic on POSIX because both live in the same directory.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=directory)
    os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes 0600; give the file the mode open() would
    os.close(fd)
    try:
        yield tmp
        with open(tmp, 'rb') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def umask():
    """The process' file-creation mask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_path(path):
    """Flush a file or a directory (its entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_dir(source, target, trash_prefix='.old-'):
    """Rename directory ``source`` onto ``target``; an existing ``target`` is first moved aside, then deleted.

    The move-aside goes into a ``trash_prefix*`` folder beside ``target``, so a crash between the two renames
    leaves the old entry in a folder a later cleanup recognises, never a half-deleted ``target``.
    """
    trash = tempfile.mkdtemp(prefix=trash_prefix, dir=os.path.dirname(os.path.abspath(target)))
    try:
        if os.path.lexists(target):
            os.rename(target, os.path.join(trash, 'previous'))
        os.rename(source, target)
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def write_bytes(path, data):
    """Atomically write ``data`` (bytes) to ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            f.write(data)


def write_text(path, text):
    """Atomically write ``text`` (str, UTF-8) to ``path``."""
    write_bytes(path, text.encode('utf-8'))
