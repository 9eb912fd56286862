"""``paddleseg prepare cityscapes``: the labelTrainIds PNGs and the SPLIT.txt lists.

The layout read and written is described in :mod:`paddle_psp.data.prepare`.
"""
import functools
import glob
import importlib.util
import os

import numpy as np

from paddle_psp.core.errors import UserError
from paddle_psp.data.datasets import (CITYSCAPES_LAYOUT, IGNORE_INDEX, IMAGE_SUFFIX, LABEL_IDS_SUFFIX,
                                      TRAIN_IDS_SUFFIX, unpaired_cityscapes_frame)
from paddle_psp.data.label_jobs import Job, convert_all, listing, read_index_png, require_layout_dir


def require_cityscapesscripts():
    """Raise a one-line UserError naming the install command when cityscapesscripts (an extra) is absent."""
    if importlib.util.find_spec('cityscapesscripts') is None:
        raise UserError('cityscapesscripts is not installed (the official label table of prepare cityscapes); '
                        'expected: pip install "paddle-psp[prepare]"')


@functools.lru_cache(maxsize=None)
def cityscapes_lut():
    """256-entry table label id -> train id (255 = ignore) from cityscapesscripts; -1 marks unknown ids."""
    from cityscapesscripts.helpers.labels import labels
    lut = np.full(256, -1, dtype=np.int16)
    for label in labels:
        if label.id >= 0:
            lut[label.id] = IGNORE_INDEX if label.trainId in (-1, IGNORE_INDEX) else label.trainId
    return lut


def cityscapes_train_ids(path, lut):
    """Decode a ``*_gtFine_labelIds.png`` and map it to train ids with ``lut``.

    Raises:
        UserError: Undecodable PNG or label ids missing from the official table.
    """
    label_ids = read_index_png(path)
    train_ids = lut[label_ids]
    unknown = train_ids < 0
    if unknown.any():
        known = np.flatnonzero(lut >= 0)
        raise UserError(f'{path}: label ids {listing(np.unique(label_ids[unknown]))} not in the Cityscapes '
                        f'label table; expected ids {known.min()}..{known.max()} (cityscapesscripts)')
    return train_ids.astype(np.uint8)


def _check_images_match(root, split):
    """Every label of ``split`` has its image and every image its label (PaddleSeg pairs them by order)."""
    unpaired = unpaired_cityscapes_frame(root, split, LABEL_IDS_SUFFIX)
    if unpaired is not None:
        _, lacks, missing = unpaired
        partner = 'gtFine label' if lacks == 'image' else 'leftImg8bit image'
        raise UserError(f'{missing}: missing for its {partner}; {CITYSCAPES_LAYOUT}')


def plan_cityscapes(root):
    """Check ROOT's layout and list the conversions and the per-split list lines.

    Returns:
        tuple: (list of Job, dict split -> list of ``'image label'`` lines).
    """
    for path in (root, os.path.join(root, 'gtFine'), os.path.join(root, 'leftImg8bit')):
        require_layout_dir(path, CITYSCAPES_LAYOUT)
    label_files = sorted(glob.glob(os.path.join(root, 'gtFine', '*', '*', '*' + LABEL_IDS_SUFFIX)))
    if not label_files:
        raise UserError(f'{os.path.join(root, "gtFine")}: no SPLIT/CITY/*{LABEL_IDS_SUFFIX}; {CITYSCAPES_LAYOUT}')
    decode = functools.partial(cityscapes_train_ids, lut=cityscapes_lut())
    jobs, lines = [], {}
    for label_ids in label_files:
        split, stem = os.path.relpath(label_ids, os.path.join(root, 'gtFine'))[:-len(LABEL_IDS_SUFFIX)].split(
            os.sep, 1)
        jobs.append(Job(label_ids, label_ids[:-len(LABEL_IDS_SUFFIX)] + TRAIN_IDS_SUFFIX, decode))
        unix_stem = stem.replace(os.sep, '/')
        lines.setdefault(split, []).append(
            f'leftImg8bit/{split}/{unix_stem}{IMAGE_SUFFIX} gtFine/{split}/{unix_stem}{TRAIN_IDS_SUFFIX}')
    for split in lines:
        _check_images_match(root, split)
    return jobs, lines


def prepare_cityscapes(root, workers=2, force=False):
    """Write the labelTrainIds PNGs and the SPLIT.txt lists under ``root`` (see the module docstring).

    Args:
        root (str): Cityscapes root holding ``leftImg8bit/`` and ``gtFine/``.
        workers (int, optional): Conversion processes. Default: 2.
        force (bool, optional): Convert even up-to-date outputs. Default: False.

    Returns:
        Result: Counts and the list files.
    """
    jobs, lines = plan_cityscapes(root)
    lists = {os.path.join(root, f'{split}.txt'): split_lines for split, split_lines in lines.items()}
    return convert_all(jobs, lists, workers, force, desc='cityscapes')
