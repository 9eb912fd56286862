"""The fast path's on-disk cache of exported models: where it is, how large it may grow, and its entries.

Each entry is a folder named by a key (the model's fingerprint: :mod:`paddle_psp.inference.cache_key`)
holding the files an export wrote and a marker, ``fingerprint.json``, written last: it records what the
entry was made from and the size and SHA-256 of each file. An entry whose marker is missing, unreadable or
disagrees with the files (a crash mid-export, a truncated or replaced file) is deleted and built again,
never used.

The cache keeps at most ``$PADDLE_PSP_CACHE_SIZE`` bytes (default 4G): after an entry is used or added,
the least recently used other entries are deleted until the total fits. Using an entry touches its
marker, so the marker's modification time orders the entries. The entry in use is never deleted, even
when it alone is larger than the limit. Every look-up, replacement and eviction happens under one
inter-process lock (``.lock`` in the cache folder), held by :func:`cached_entry` until its caller has
loaded the entry; only the export itself runs outside it, in a temporary folder renamed into place.

An index (``.recipes.json``) maps recipes (what an entry is made of, known before the model is built: see
:mod:`paddle_psp.inference.cache_key`) to entry keys, so that a later start finds its entry without computing
the key: :func:`recipe_entry`. A mapping is added under the lock once its entry is in place and claimed, and
written atomically; one whose entry is gone or invalid is a miss (and is dropped at the next write), never a
reason to use anything but a valid entry. The index keeps the ``MAX_RECIPES`` most recently added mappings.
"""
import contextlib
import json
import os
import re
import shutil
import tempfile
import time

from paddle_psp.core.atomic import write_text
from paddle_psp.core.errors import UserError
from paddle_psp.core.log import logger
from paddle_psp.core.files import file_lock, sha256_file

CACHE_VAR = 'PADDLE_PSP_CACHE'
SIZE_VAR = 'PADDLE_PSP_CACHE_SIZE'
DEFAULT_SIZE = '4G'
MARKER = 'fingerprint.json'
LOCK = '.lock'
INDEX = '.recipes.json'
MAX_RECIPES = 256
KEY_PATTERN = re.compile(r'[0-9A-Za-z][0-9A-Za-z_-]*')  # what the index may name: an entry, no path
WORK_PREFIX = '.export.'
# A temporary export folder this old belongs to a process that died mid-export.
STALE_WORK_SECONDS = 24 * 3600
UNITS = {'': 1, 'K': 2 ** 10, 'M': 2 ** 20, 'G': 2 ** 30, 'T': 2 ** 40}
SIZE_PATTERN = re.compile(r'\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]?)(?:I?B)?\s*', re.IGNORECASE)


def cache_dir():
    """``$PADDLE_PSP_CACHE`` or ``~/.cache/paddle_psp/inference``."""
    home_cache = os.path.join(os.path.expanduser('~'), '.cache', 'paddle_psp', 'inference')
    return os.environ.get(CACHE_VAR) or home_cache


def parse_size(text, name=SIZE_VAR):
    """A size such as ``4G``, ``500M``, ``1.5GiB`` or ``1000000`` (bytes) as an int of bytes.

    Units are powers of 1024 (K, M, G, T, with an optional B or iB, any case).

    Raises:
        UserError: ``text`` is not such a size (the message names ``name``).
    """
    match = SIZE_PATTERN.fullmatch(str(text))
    if not match:
        raise UserError(f'{name}={text!r} is not a size; expected bytes or a number with K, M, G or T '
                        f'(powers of 1024), e.g. {DEFAULT_SIZE}')
    return int(float(match.group(1)) * UNITS[match.group(2).upper()])


def size_limit():
    """The cache's size limit in bytes: ``$PADDLE_PSP_CACHE_SIZE`` or 4 GiB (a UserError if invalid)."""
    return parse_size(os.environ.get(SIZE_VAR) or DEFAULT_SIZE)


def format_size(size):
    """``size`` bytes in the largest unit that leaves at least 1, e.g. ``4 GiB`` or ``300 MiB``."""
    for unit in 'TGMK':
        if size >= UNITS[unit]:
            return f'{size / UNITS[unit]:.3g} {unit}iB'
    return f'{size} B'


@contextlib.contextmanager
def cached_entry(key, build, root=None, limit=None, description=None, recipe=None):
    """Hold the lock on a valid cache entry for ``key``, building it first if needed; yields its folder.

    Load what the entry holds inside the ``with`` block: once it ends another process may evict it.

    Args:
        key (str): The entry's name (e.g. a hex digest).
        build (callable): ``build(folder)`` writes the entry's files into an empty ``folder``.
        root (str, optional): The cache folder. Default: :func:`cache_dir`.
        limit (int, optional): Size limit in bytes. Default: :func:`size_limit`.
        description (dict, optional): What the entry was made from, kept in its marker. Default: None.
        recipe (tuple, optional): ``(recipe, record)``: map the recipe (a hex digest) to ``key`` in the
            index, keeping the dict ``record`` with it (see :func:`recipe_entry`). Default: None.

    Raises:
        UserError: ``$PADDLE_PSP_CACHE_SIZE`` is invalid (only when ``limit`` is None).
    """
    root = root or cache_dir()
    limit = size_limit() if limit is None else limit
    target = os.path.join(root, key)
    os.makedirs(root, exist_ok=True)
    with file_lock(os.path.join(root, LOCK)):
        if _claim(root, target, limit):
            _remember(root, key, recipe)
            yield target
            return
    work = tempfile.mkdtemp(dir=root, prefix=WORK_PREFIX)
    try:
        logger.info(f'exporting an inference model to {target}')
        build(work)
        write_marker(work, description)
        with file_lock(os.path.join(root, LOCK)):
            if not _claim(root, target, limit):  # another process may have built it meanwhile
                os.rename(work, target)
                _claim(root, target, limit)
            _remember(root, key, recipe)
            yield target
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def recipe_entry(recipe, check=None, root=None, limit=None):
    """Hold the lock on the valid entry the index maps ``recipe`` to; yields its folder, or None (a miss).

    A miss: the index has no mapping for ``recipe``, ``check(record)`` is false for the record kept with it,
    or its entry is gone or invalid (then deleted, as by :func:`cached_entry`). A hit touches the entry and
    evicts others as :func:`cached_entry` does; load what it holds inside the ``with`` block.

    Args:
        recipe (str): A hex digest (see :mod:`paddle_psp.inference.cache_key`).
        check (callable, optional): ``check(record) -> bool`` on the record kept with the mapping.
        root (str, optional): The cache folder. Default: :func:`cache_dir`.
        limit (int, optional): Size limit in bytes. Default: :func:`size_limit`.
    """
    root = root or cache_dir()
    limit = size_limit() if limit is None else limit
    if os.path.isfile(os.path.join(root, INDEX)):
        with file_lock(os.path.join(root, LOCK)):
            record = read_index(root).get(recipe)
            if record is not None and (check is None or check(record)):
                target = os.path.join(root, record['key'])
                if _claim(root, target, limit):
                    yield target
                    return
    yield None


def read_index(root):
    """The index of ``root``: ``{recipe: record}``, each record a dict with the entry's ``key``, oldest
    first; empty when it is missing or unreadable (call under the lock)."""
    try:
        with open(os.path.join(root, INDEX), encoding='utf-8') as handle:
            index = json.load(handle)
    except (OSError, ValueError):
        return {}
    if not isinstance(index, dict):
        return {}
    return {recipe: record for recipe, record in index.items()
            if isinstance(record, dict) and KEY_PATTERN.fullmatch(str(record.get('key')))}


def _remember(root, key, recipe):
    """Under the lock: map ``recipe`` (``(recipe, record)`` or None) to entry ``key`` in the index, dropping
    mappings to entries that are gone and all but the ``MAX_RECIPES`` newest."""
    if recipe is None:
        return
    name, record = recipe
    index = {old: entry for old, entry in read_index(root).items()
             if old != name and os.path.isdir(os.path.join(root, entry['key']))}
    index[name] = dict(record, key=key)
    kept = dict(list(index.items())[-MAX_RECIPES:])
    try:
        write_text(os.path.join(root, INDEX), json.dumps(kept, indent=1))
    except OSError as err:  # the entry is in place; only later starts lose their shortcut
        logger.warning(f'{os.path.join(root, INDEX)}: not updated: {err}')


def _claim(root, target, limit):
    """Under the lock: whether ``target`` is a valid entry; if so touch it and evict others to fit ``limit``.

    An invalid entry is deleted."""
    if not os.path.lexists(target):
        return False
    if not is_valid(target):
        logger.warning(f'{target}: incomplete or corrupt cache entry; building it again')
        _remove(target)
        return False
    os.utime(os.path.join(target, MARKER))
    evict(root, limit, keep=os.path.basename(target))
    return True


def write_marker(folder, description=None):
    """Write ``folder``'s marker: ``description`` and the size and SHA-256 of every file in it."""
    files = {name: {'bytes': os.path.getsize(os.path.join(folder, name)),
                    'sha256': sha256_file(os.path.join(folder, name))}
             for name in sorted(os.listdir(folder)) if name != MARKER}
    with open(os.path.join(folder, MARKER), 'w', encoding='utf-8') as handle:
        json.dump({'files': files, 'description': description}, handle, indent=1)


def is_valid(folder):
    """Whether ``folder`` has a readable marker listing exactly its files, with their sizes and digests."""
    try:
        with open(os.path.join(folder, MARKER), encoding='utf-8') as handle:
            files = json.load(handle)['files']
        if set(files) != set(os.listdir(folder)) - {MARKER}:
            return False
        return all(os.path.getsize(os.path.join(folder, name)) == facts['bytes'] and
                   sha256_file(os.path.join(folder, name)) == facts['sha256'] for name, facts in files.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def evict(root, limit, keep=None):
    """Delete least recently used entries of ``root`` until it holds at most ``limit`` bytes (call under the
    lock). ``keep`` (an entry's name) is never deleted; temporary export folders count only when stale."""
    entries, total, now = [], 0, time.time()
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if name == LOCK or not os.path.isdir(path):
            continue
        if name.startswith(WORK_PREFIX):  # other processes remove theirs without the lock
            if now - _last_use(path) > STALE_WORK_SECONDS:
                _remove(path)
            continue
        size = folder_bytes(path)
        total += size
        if name != keep:
            entries.append((_last_use(path), name, size))
    for _, name, size in sorted(entries):
        if total <= limit:
            break
        logger.info(f'fast-path cache over {format_size(limit)}: deleting the least recently used {name}')
        _remove(os.path.join(root, name))
        total -= size


def folder_bytes(folder):
    """Bytes of the files directly in ``folder``."""
    with os.scandir(folder) as items:
        return sum(item.stat().st_size for item in items if item.is_file(follow_symlinks=False))


def _last_use(folder):
    """The modification time of ``folder``'s marker (its last use), or of the folder when it has none."""
    for path in (os.path.join(folder, MARKER), folder):
        with contextlib.suppress(OSError):
            return os.path.getmtime(path)
    return time.time()  # gone meanwhile


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.remove(path)
