"""One training run at a time in a ``--save_dir``: an inter-process lock held while the run writes there.

A preempted job restarted while the old one still runs would otherwise have two processes saving,
pruning and removing each other's temporary folders in one folder. Rank 0 of ``paddleseg train`` takes
``save_dir/.train.lock`` (an OS file lock: the kernel releases it when the process ends in any way,
``kill -9`` included, so a lock left behind never blocks the next run) and records who holds it in
``save_dir/.train.lock.json`` (process id, host, start time, command), which a refused run names. Both
files go when the run ends (a killed run leaves them; the next run takes them over), and so does the
folder when the run created it and wrote nothing else.

The lock is taken after the run is validated (config, data, checkpoint: bad input leaves nothing behind)
and before its first write; :func:`exclusive_save_dir` then checks again what the run decided without it
(the checkpoint ``--resume_model auto`` chose, another run's checkpoints in the folder), since a run that
ended in between may have changed the folder.
"""
import contextlib
import datetime
import functools
import json
import os
import socket
import sys

from paddle_psp.core.atomic import write_text
from paddle_psp.core.errors import UserError
from paddle_psp.core.log import logger
from paddle_psp.core.outputs import writing
from paddle_psp.core.files import LockBusy, file_lock

LOCK_FILE = '.train.lock'
OWNER_FILE = '.train.lock.json'


@contextlib.contextmanager
def exclusive_save_dir(save_dir, decide=None, decided=None, enabled=True):
    """Hold ``save_dir``'s training lock for a ``with`` block (creating the folder if needed).

    Args:
        save_dir (str): The run's ``--save_dir``.
        decide (callable, optional): Called once the lock is held: what the run would decide now (e.g. the
            checkpoint to resume from); it may raise a UserError itself. Default: None.
        decided (object, optional): What ``decide`` returned before the lock; a different answer now is a
            UserError (a run that ended meanwhile changed the folder). Default: None.
        enabled (bool, optional): False holds nothing (ranks other than 0 of a data-parallel job, whose
            rank 0 holds the lock). Default: True.

    Raises:
        UserError: Another process holds the lock (one line naming its process id and host), or the folder
            changed since the run decided how to start.
    """
    if not enabled:
        yield
        return
    with writing(save_dir):
        created = _make_dirs(save_dir)
    owner_path = os.path.join(save_dir, OWNER_FILE)
    release = _try_lock(os.path.join(save_dir, LOCK_FILE))
    if release is None:
        raise UserError(f'--save_dir {save_dir}: another paddleseg train is writing there ({describe(owner_path)}); '
                        'expected one run per folder: wait for it to end or stop it, then run again '
                        '(--resume_model auto continues from its newest checkpoint)')
    try:
        if read_owner(owner_path):
            logger.info(f'--save_dir {save_dir}: the run of {describe(owner_path)} ended without releasing it '
                        '(killed?); taking over')
        if decide is not None and decide() != decided:
            raise UserError(f'--save_dir {save_dir}: another run wrote checkpoints there while this one started; '
                            'expected the folder unchanged: run again (--resume_model auto continues from the '
                            'newest)')
        with writing(owner_path):
            write_text(owner_path, json.dumps(owner_record()))
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(owner_path)
        release()
        for folder in reversed(created):  # only folders this run made, and only when empty
            with contextlib.suppress(OSError):
                os.rmdir(folder)


def _make_dirs(path):
    """``os.makedirs(path)``; returns the folders it created, outermost first."""
    missing, folder = [], os.path.abspath(path)
    while not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    os.makedirs(path, exist_ok=True)
    return missing[::-1]


def _try_lock(path):
    """Take the OS lock on file ``path`` without waiting; returns the function that releases it (removing
    the file), or None when another process holds it."""
    try:
        import fcntl  # POSIX; elsewhere the portable lock of core.files, whose file stays
    except ImportError:
        held = contextlib.ExitStack()
        try:
            held.enter_context(file_lock(path, wait=False))
        except LockBusy:
            return None
        return held.close
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if _is_file_at(fd, path):
            return functools.partial(_unlock, fd, path)
        os.close(fd)  # the run that held it removed it meanwhile: lock the file now at ``path``


def _is_file_at(fd, path):
    """Whether open file ``fd`` is the file at ``path`` (not one removed or replaced since it was opened)."""
    try:
        there = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)


def _unlock(fd, path):
    """Remove the lock file while holding it (a process that opened it meanwhile sees it is gone), then
    release it."""
    with contextlib.suppress(OSError):
        os.remove(path)
    os.close(fd)


def owner_record():
    """What ``.train.lock.json`` says of this process."""
    return {'pid': os.getpid(), 'host': socket.gethostname(),
            'started': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
            'command': ' '.join(['paddleseg'] + sys.argv[1:])[:500]}


def read_owner(path):
    """The record of ``.train.lock.json`` at ``path``, or {} (absent, being written or unreadable)."""
    try:
        with open(path, encoding='utf-8') as file:
            record = json.load(file)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def describe(owner_path):
    """``pid 1234 on host h since 2026-...`` from the lock's record, or what is known."""
    record = read_owner(owner_path)
    if not record:
        return 'process unknown: it has not recorded itself yet'
    return (f'pid {record.get("pid", "?")} on host {record.get("host", "?")} since {record.get("started", "?")}: '
            f'{record.get("command", "")}').rstrip(': ')
