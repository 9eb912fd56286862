"""The label conversions ``paddleseg prepare`` runs for every dataset: jobs, the process pool, the list files.

Every PNG and list is written atomically, so a killed run leaves no half-written file. A label PNG that
exists and is not older than its source is skipped, so a second run converts nothing and an interrupted
run resumes where it stopped; ``force`` converts everything again. Every folder and list that a run will
write to is checked before the first conversion (:func:`check_outputs`).
"""
import multiprocessing
import os
import stat
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, NamedTuple

import cv2
import numpy as np
from PIL import Image

from paddle_psp.core import atomic
from paddle_psp.core.errors import UserError, one_line
from paddle_psp.core.outputs import require_dir, require_file, writing
from paddle_psp.core.console import Progress

LABELS_EXPECTED = 'a writable folder for the converted label PNGs (copy a read-only dataset to a writable place)'
LIST_EXPECTED = 'a writable place for the image list file'


class Job(NamedTuple):
    """One label image to convert: ``decode(src)`` is the uint8 array saved as a PNG at ``dst``."""
    src: str
    dst: str
    decode: Callable


class ListFile(NamedTuple):
    """A list file that was written (``changed``) or found already up to date."""
    path: str
    lines: int
    changed: bool


class Result(NamedTuple):
    """What one ``prepare`` run did."""
    converted: int
    total: int
    lists: list


def listing(values, most=8):
    """``'1, 2, 3, ...'`` for the first ``most`` values."""
    shown = ', '.join(str(v) for v in values[:most])
    return shown + (', ...' if len(values) > most else '')


def read_index_png(path):
    """Read an 8-bit label PNG as its stored values (a palette PNG gives its indices, not colours).

    Raises:
        UserError: The file cannot be decoded or is not single-channel 8-bit / palette-indexed.
    """
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            values = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as err:
        raise UserError(f'{path}: cannot decode PNG ({one_line(err, limit=None)}); '
                        'expected an intact label PNG') from err
    if mode not in ('L', 'P'):
        raise UserError(f'{path}: PNG mode {mode}; expected an 8-bit single-channel or palette-indexed PNG')
    return values


def write_label_png(path, labels):
    """Atomically write a 2-D uint8 array as a plain 8-bit grayscale PNG."""
    ok, encoded = cv2.imencode('.png', labels)
    if not ok:
        raise RuntimeError(f'{path}: OpenCV could not encode a {labels.dtype} array of shape {labels.shape}')
    atomic.write_bytes(path, encoded.tobytes())


def convert(job):
    """Decode ``job.src`` and write its labels to ``job.dst``."""
    labels = job.decode(job.src)
    with writing(job.dst):  # a disk that filled up (or turned read-only) since the checks
        write_label_png(job.dst, labels)


def _up_to_date(job):
    """True when ``job.dst`` exists, is not empty and is not older than ``job.src``."""
    try:
        written = os.stat(job.dst)
    except (FileNotFoundError, NotADirectoryError):  # a file in the way of a folder: check_outputs names it
        return False
    return (stat.S_ISREG(written.st_mode) and written.st_size > 0
            and written.st_mtime_ns >= os.stat(job.src).st_mtime_ns)


def _pool_context():
    # Fork where it is the safe default (Linux): the workers inherit the imported modules instead of
    # importing paddle_psp (and Paddle) again, and they use only NumPy, Pillow, OpenCV and SciPy.
    return multiprocessing.get_context('fork' if sys.platform.startswith('linux') else None)


def _convert_in_pool(jobs, workers, advance):
    """Convert ``jobs`` with ``workers`` processes; on the first error wait for running jobs, drop the rest."""
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context())
    try:
        for future in as_completed([executor.submit(convert, job) for job in jobs]):
            future.result()
            advance()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def pending_jobs(jobs, force=False):
    """The jobs whose output is missing or stale (all of them with ``force``)."""
    return list(jobs) if force else [job for job in jobs if not _up_to_date(job)]


def run_jobs(pending, workers=2, desc='converting'):
    """Convert the ``pending`` jobs; a progress bar goes to stderr when it is a terminal.

    Returns:
        int: The number of label images converted.
    """
    with Progress(desc, len(pending), unit='img') as bar:
        if workers > 1 and len(pending) > 1:
            _convert_in_pool(pending, workers, bar.advance)
        else:
            for job in pending:
                convert(job)
                bar.advance()
    return len(pending)


def _list_is_current(path, lines):
    """Whether the file ``path`` holds exactly ``lines``, one per line."""
    if not os.path.isfile(path):
        return False
    with open(path, encoding='utf-8') as f:
        return f.read() == ''.join(line + '\n' for line in lines)


def write_list(path, lines):
    """Atomically write ``lines`` (one per line) to ``path`` unless it already holds exactly them."""
    if _list_is_current(path, lines):
        return ListFile(path, len(lines), changed=False)
    with writing(path):
        atomic.write_text(path, ''.join(line + '\n' for line in lines))
    return ListFile(path, len(lines), changed=True)


def check_outputs(pending, lists):
    """Stop with one line, before anything is written, unless every output that will be written can be.

    Args:
        pending (list): The jobs that will run.
        lists (dict): List file path -> its lines.
    """
    for job in pending:
        if os.path.isdir(job.dst):
            raise UserError(f'{job.dst}: is a directory; expected the converted label PNG of {job.src}')
    for folder in sorted({os.path.dirname(job.dst) for job in pending}):
        require_dir(folder, LABELS_EXPECTED)
    for path, lines in lists.items():
        if not _list_is_current(path, lines):
            require_file(path, LIST_EXPECTED)


def convert_all(jobs, lists, workers, force, desc):
    """Check the outputs, convert what is pending, write the lists; the :class:`Result`."""
    pending = pending_jobs(jobs, force)
    check_outputs(pending, lists)
    converted = run_jobs(pending, workers, desc)
    return Result(converted, len(jobs), [write_list(path, lines) for path, lines in lists.items()])


def require_layout_dir(path, layout):
    """Raise a UserError that names ``path`` and the expected ``layout`` unless it is a directory."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise UserError(f'{path}: not a directory; {layout}')
    if not os.path.isdir(path):
        raise UserError(f'{path}: no such directory; {layout}')


def read_names(path, layout):
    """Image names listed in ``path``, one per line."""
    if not os.path.isfile(path):
        raise UserError(f'{path}: missing; {layout}')
    with open(path, encoding='utf-8') as f:
        return [line.strip() for line in f if line.strip()]


def require_files(paths, why):
    """Raise for the first of ``paths`` that does not exist."""
    for path in paths:
        if not os.path.isfile(path):
            raise UserError(f'{path}: missing; expected {why}')
