"""Output locations: checked before any work starts, and a failed write named in one line.

A verb that writes files (the download cache, ``paddleseg prepare``) first calls :func:`require_dir` or
:func:`require_file` for every place it will write to, so that a bad location (an empty path, a regular
file in the way, a read-only folder) stops it at once with one line, before anything is created. While it
writes, :func:`writing` turns the errors of a full or read-only disk into the same kind of one line.
"""
import contextlib
import errno
import os
import tempfile

from paddle_psp.core.errors import UserError

# Errors of the local file system that no retry mends: the message names the path instead of a traceback.
WRITE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG,
                          errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG})
PROBE_PREFIX = '.paddle-psp-write-probe-'


def require_dir(path, expected, name=None):
    """Check that ``path`` is a writable directory, or can be created as one. Creates nothing.

    Args:
        path (str): The folder.
        expected (str): What the folder is for, ending the message: ``expected <expected>``.
        name (str, optional): The option or variable that gave ``path`` (e.g. ``'--root'``), named in the
            message. Default: None.

    Returns:
        str: The absolute path.

    Raises:
        UserError: One line naming the path and what is wrong.
    """
    label = _label(path, name, expected)
    full = os.path.abspath(path)
    existing = full
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        problem = 'is a file' if existing == full else f'cannot be created: {existing} is a file'
        raise UserError(f'{label}: {problem}; expected {expected}')
    problem = _not_writable(existing)
    if problem:
        where = '' if existing == full else f'{existing}: '
        raise UserError(f'{label}: not writable ({where}{problem}); expected {expected}')
    return full


def require_file(path, expected, name=None):
    """Check that the file ``path`` can be written: no directory in its place, its folder writable.

    Args:
        path (str): The file.
        expected (str): What the file is, ending the message.
        name (str, optional): The option that gave ``path``. Default: None.

    Raises:
        UserError: One line naming the path and what is wrong.
    """
    label = _label(path, name, expected)
    if os.path.isdir(path):
        raise UserError(f'{label}: is a directory; expected {expected}')
    require_dir(os.path.dirname(os.path.abspath(path)), expected)


@contextlib.contextmanager
def writing(path, removed=None):
    """A ``with`` block that writes ``path``: a disk-full or permission error becomes a one-line UserError.

    Args:
        path (str): The file (or folder) being written, named in the message.
        removed (str, optional): A partial file to delete on such an error (it is useless and takes space).
            Default: None.
    """
    try:
        yield
    except OSError as err:
        if err.errno not in WRITE_ERRNOS:
            raise
        if removed:
            with contextlib.suppress(OSError):
                os.remove(removed)
        raise UserError(write_error_message(path, err)) from None


def write_error_message(path, err):
    """``'PATH: cannot write (REASON); expected ...'`` for an OSError ``err`` raised while writing ``path``."""
    reason = err.strerror or os.strerror(err.errno)
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        advice = 'free space on its disk (free some, or write to another disk)'
    else:
        advice = 'a location this user can write to'
    return f'{path}: cannot write ({reason}); expected {advice}'


def _label(path, name, expected):
    if not path:
        raise UserError(f'{name or "path"}: empty path; expected the path of {expected}')
    return f'{name} {path}' if name else path


def _not_writable(folder):
    """Why files cannot be created in the existing ``folder``, or '' when they can."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return 'no write permission'
    try:
        probe_write(folder)
    except OSError as err:
        return err.strerror or os.strerror(err.errno)
    return ''


def probe_write(folder):
    """Create and delete a file in ``folder`` (permission bits do not stop root; a read-only mount does)."""
    fd, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=folder)
    os.close(fd)
    os.remove(probe)
