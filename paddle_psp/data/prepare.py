"""``paddleseg prepare``: turn Cityscapes and PASCAL VOC 2012 + SBD into what PaddleSeg's datasets read.

``paddleseg prepare cityscapes --root ROOT``
    ROOT holds ``leftImg8bit/`` and ``gtFine/`` as unpacked from the official ``leftImg8bit_trainvaltest.zip``
    and ``gtFine_trainvaltest.zip``. For every split folder in ``gtFine/`` (train, val, test) it writes:

    - ``ROOT/gtFine/SPLIT/CITY/X_gtFine_labelTrainIds.png`` beside each ``X_gtFine_labelIds.png``: uint8
      train ids 0..18 and 255 (ignore), mapped with the official table ``cityscapesscripts.helpers.labels``
      (label id -> trainId; trainId 255 or -1 -> 255);
    - ``ROOT/SPLIT.txt``: one line per image,
      ``leftImg8bit/SPLIT/CITY/X_leftImg8bit.png gtFine/SPLIT/CITY/X_gtFine_labelTrainIds.png``,
      paths relative to ROOT, in the order ``paddleseg.datasets.Cityscapes`` pairs them.

    Then ``Cityscapes(dataset_root=ROOT, mode=SPLIT)`` reads it.

``paddleseg prepare voc12aug --voc VOCDEVKIT --sbd SBD``
    VOCDEVKIT is the ``VOCdevkit`` folder of ``VOCtrainval_11-May-2012.tar`` (holding ``VOC2012/``; the
    ``VOC2012`` folder itself is accepted too). SBD is SBD's ``benchmark_RELEASE`` folder from ``benchmark.tgz``
    or its ``dataset/`` subfolder (holding ``cls/*.mat``, ``train.txt``, ``val.txt``). Inside
    ``VOCDEVKIT/VOC2012`` it writes:

    - ``SegmentationClassAug/NAME.png``: plain uint8 class ids 0..20 and 255 (ignore), no palette. For every
      name in VOC's ``ImageSets/Segmentation/{train,val}.txt`` it is VOC's palette-indexed
      ``SegmentationClass/NAME.png`` (its indices, 255 borders kept); for every other name in SBD's
      ``train.txt``/``val.txt`` it is ``GTcls.Segmentation`` of SBD's ``cls/NAME.mat``. VOC's annotation
      wins for images both have.
    - ``ImageSets/Segmentation/aug.txt``: SBD train+val minus VOC train+val, sorted. This is the list that
      ``PascalVOC(mode='trainaug')`` appends to VOC's ``train.txt`` (labels read from SegmentationClassAug).
    - ``ImageSets/Segmentation/trainaug.txt``: the whole train-aug set, VOC train + aug.txt, sorted (10582
      names for the official data); all its labels are in SegmentationClassAug.

    Then ``PascalVOC(dataset_root=VOCDEVKIT, mode='trainaug')`` reads it.

Every PNG and list is written atomically, so a killed run leaves no half-written file. A label PNG that
exists and is not older than its source is skipped, so a second run converts nothing and an interrupted
run resumes where it stopped; ``--force`` converts everything again. Every folder and list that a run
will write to is checked before the first conversion (a file in the way, a read-only folder): such a run
stops with one line and writes nothing. Only results go to stdout; the progress bar goes to stderr.
"""
import functools
import glob
import importlib.util
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
from paddle_psp.core.util import Progress
from paddle_psp.data.datasets import (CITYSCAPES_LAYOUT, IGNORE_INDEX, IMAGE_SUFFIX, LABEL_IDS_SUFFIX, SBD_LAYOUT,
                                      TRAIN_IDS_SUFFIX, VOC_CLASSES, VOC_LAYOUT, unpaired_cityscapes_frame)
from paddle_psp_cli.parsers import prepare_parser

VOC_ALLOWED = np.append(np.arange(len(VOC_CLASSES)), IGNORE_INDEX)
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


# ---------------------------------------------------------------- reading and writing label images

def _listing(values, most=8):
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
        raise UserError(f'{path}: label ids {_listing(np.unique(label_ids[unknown]))} not in the Cityscapes '
                        f'label table; expected ids {known.min()}..{known.max()} (cityscapesscripts)')
    return train_ids.astype(np.uint8)


def _voc_class_ids(path, labels):
    """Check that ``labels`` holds VOC class ids 0..20 or 255 only and return them as uint8."""
    bad = np.setdiff1d(np.unique(labels), VOC_ALLOWED)
    if bad.size:
        raise UserError(f'{path}: label values {_listing(bad)} out of range; '
                        'expected class ids 0..20 or 255 (ignore)')
    return labels.astype(np.uint8)


def voc_png_labels(path):
    """Class ids of VOC's palette-indexed ``SegmentationClass/NAME.png``."""
    return _voc_class_ids(path, read_index_png(path))


def sbd_mat_labels(path):
    """Class ids of SBD's ``cls/NAME.mat`` (the ``Segmentation`` field of its ``GTcls`` struct).

    Raises:
        UserError: Unreadable file, missing struct/field, wrong shape or out-of-range values.
    """
    from scipy.io import loadmat
    try:
        mat = loadmat(path)
    except Exception as err:  # a damaged file makes scipy raise OSError, ValueError, zlib.error, ...
        raise UserError(f'{path}: cannot read MAT file ({one_line(err, limit=None)}); '
                        'expected an SBD cls/*.mat') from err
    struct = mat.get('GTcls')
    fields = struct.dtype.names if isinstance(struct, np.ndarray) else None
    if not fields or 'Segmentation' not in fields or struct.size != 1:
        raise UserError(f"{path}: no 'GTcls' struct with a 'Segmentation' field; expected an SBD cls/*.mat")
    labels = np.asarray(struct['Segmentation'].item())
    if labels.ndim != 2 or labels.dtype.kind not in 'uif':
        raise UserError(f'{path}: GTcls.Segmentation is a {labels.dtype} array of shape {labels.shape}; '
                        'expected a 2-D array of class ids')
    return _voc_class_ids(path, labels)


# ---------------------------------------------------------------- running the conversions

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


def _convert_all(jobs, lists, workers, force, desc):
    """Check the outputs, convert what is pending, write the lists; the :class:`Result`."""
    pending = pending_jobs(jobs, force)
    check_outputs(pending, lists)
    converted = run_jobs(pending, workers, desc)
    return Result(converted, len(jobs), [write_list(path, lines) for path, lines in lists.items()])


# ---------------------------------------------------------------- Cityscapes

def _require_dir(path, layout):
    """Raise a UserError that names ``path`` and the expected ``layout`` unless it is a directory."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise UserError(f'{path}: not a directory; {layout}')
    if not os.path.isdir(path):
        raise UserError(f'{path}: no such directory; {layout}')


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
        _require_dir(path, CITYSCAPES_LAYOUT)
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
    return _convert_all(jobs, lists, workers, force, desc='cityscapes')


# ---------------------------------------------------------------- VOC 2012 + SBD

def _voc_devkit(voc):
    """The VOCdevkit folder for ``--voc`` (which may also name its VOC2012 subfolder), layout checked."""
    _require_dir(voc, VOC_LAYOUT)
    if os.path.basename(os.path.abspath(voc)) == 'VOC2012' and not os.path.isdir(os.path.join(voc, 'VOC2012')):
        voc = os.path.dirname(os.path.abspath(voc))
    for sub in ('VOC2012', 'VOC2012/JPEGImages', 'VOC2012/SegmentationClass', 'VOC2012/ImageSets/Segmentation'):
        _require_dir(os.path.join(voc, *sub.split('/')), VOC_LAYOUT)
    return voc


def _sbd_dataset(sbd):
    """SBD's ``dataset`` folder for ``--sbd`` (benchmark_RELEASE or benchmark_RELEASE/dataset)."""
    _require_dir(sbd, SBD_LAYOUT)
    for candidate in (sbd, os.path.join(sbd, 'dataset')):
        if os.path.isdir(os.path.join(candidate, 'cls')):
            return candidate
    raise UserError(f'{sbd}: no cls/ folder; {SBD_LAYOUT}')


def _read_names(path, layout):
    """Image names listed in ``path``, one per line."""
    if not os.path.isfile(path):
        raise UserError(f'{path}: missing; {layout}')
    with open(path, encoding='utf-8') as f:
        return [line.strip() for line in f if line.strip()]


def _require_files(paths, why):
    """Raise for the first of ``paths`` that does not exist."""
    for path in paths:
        if not os.path.isfile(path):
            raise UserError(f'{path}: missing; expected {why}')


def plan_voc12aug(voc, sbd):
    """Check both layouts and list the conversions and the name lists.

    Returns:
        tuple: (VOC2012 folder, list of Job, dict list file name -> sorted names).
    """
    voc2012 = os.path.join(_voc_devkit(voc), 'VOC2012')
    sbd = _sbd_dataset(sbd)
    sets = os.path.join(voc2012, 'ImageSets', 'Segmentation')
    voc_train = set(_read_names(os.path.join(sets, 'train.txt'), VOC_LAYOUT))
    voc_names = sorted(voc_train | set(_read_names(os.path.join(sets, 'val.txt'), VOC_LAYOUT)))
    sbd_names = {name for split in ('train', 'val') for name in _read_names(os.path.join(sbd, f'{split}.txt'),
                                                                            SBD_LAYOUT)}
    aug = sorted(sbd_names - set(voc_names))
    out_dir = os.path.join(voc2012, 'SegmentationClassAug')
    jobs = [Job(os.path.join(voc2012, 'SegmentationClass', f'{name}.png'), os.path.join(out_dir, f'{name}.png'),
                voc_png_labels) for name in voc_names]
    jobs += [Job(os.path.join(sbd, 'cls', f'{name}.mat'), os.path.join(out_dir, f'{name}.png'), sbd_mat_labels)
             for name in aug]
    _require_files([job.src for job in jobs], 'a label file for every name in the VOC and SBD train/val lists')
    _require_files([os.path.join(voc2012, 'JPEGImages', f'{name}.jpg') for name in voc_names + aug],
                   f'a VOC2012/JPEGImages image for every name in the VOC and SBD train/val lists; {VOC_LAYOUT}')
    return voc2012, jobs, {'aug.txt': aug, 'trainaug.txt': sorted(voc_train | set(aug))}


def prepare_voc12aug(voc, sbd, workers=2, force=False):
    """Write SegmentationClassAug and the aug/trainaug lists inside ``voc`` (see the module docstring).

    Args:
        voc (str): The VOCdevkit folder (or its VOC2012 subfolder).
        sbd (str): SBD's benchmark_RELEASE folder or its dataset/ subfolder.
        workers (int, optional): Conversion processes. Default: 2.
        force (bool, optional): Convert even up-to-date outputs. Default: False.

    Returns:
        Result: Counts and the list files.
    """
    voc2012, jobs, names = plan_voc12aug(voc, sbd)
    sets = os.path.join(voc2012, 'ImageSets', 'Segmentation')
    lists = {os.path.join(sets, file_name): file_names for file_name, file_names in names.items()}
    return _convert_all(jobs, lists, workers, force, desc='voc12aug')


# ---------------------------------------------------------------- command line

def _report(dataset, result):
    """Print what a run did, one line per fact."""
    if result.converted:
        print(f'{dataset}: converted {result.converted} label images '
              f'({result.total - result.converted} already up to date)')
    else:
        print(f'{dataset}: nothing to convert; all {result.total} label images are up to date')
    for list_file in result.lists:
        state = 'wrote' if list_file.changed else 'up to date:'
        print(f'{dataset}: {state} {list_file.path} ({list_file.lines} lines)')


def main(argv=None):
    """``paddleseg prepare {cityscapes,voc12aug} ...``; returns the exit status."""
    args = prepare_parser().parse_args(argv)
    for option in ('root', 'voc', 'sbd'):
        if getattr(args, option, None) == '':
            raise UserError(f'--{option}: empty path; expected the path of a dataset folder '
                            f'(see "paddleseg prepare {args.dataset} --help")')
    if args.dataset == 'cityscapes':
        require_cityscapesscripts()
        result = prepare_cityscapes(args.root, args.workers, args.force)
    else:
        result = prepare_voc12aug(args.voc, args.sbd, args.workers, args.force)
    _report(args.dataset, result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
