"""``paddleseg prepare voc12aug``: VOC 2012 + SBD into SegmentationClassAug and the aug / trainaug lists
(see :mod:`paddle_psp.data.prepare`)."""
import os

import numpy as np

from paddle_psp.core.errors import UserError, one_line
from paddle_psp.data.datasets import IGNORE_INDEX, SBD_LAYOUT, VOC_CLASSES, VOC_LAYOUT
from paddle_psp.data.label_jobs import (Job, convert_all, listing, read_index_png, read_names, require_files,
                                        require_layout_dir)

VOC_ALLOWED = np.append(np.arange(len(VOC_CLASSES)), IGNORE_INDEX)


def _voc_class_ids(path, labels):
    """Check that ``labels`` holds VOC class ids 0..20 or 255 only and return them as uint8."""
    bad = np.setdiff1d(np.unique(labels), VOC_ALLOWED)
    if bad.size:
        raise UserError(f'{path}: label values {listing(bad)} out of range; '
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


def _voc_devkit(voc):
    """The VOCdevkit folder for ``--voc`` (which may also name its VOC2012 subfolder), layout checked."""
    require_layout_dir(voc, VOC_LAYOUT)
    if os.path.basename(os.path.abspath(voc)) == 'VOC2012' and not os.path.isdir(os.path.join(voc, 'VOC2012')):
        voc = os.path.dirname(os.path.abspath(voc))
    for sub in ('VOC2012', 'VOC2012/JPEGImages', 'VOC2012/SegmentationClass', 'VOC2012/ImageSets/Segmentation'):
        require_layout_dir(os.path.join(voc, *sub.split('/')), VOC_LAYOUT)
    return voc


def _sbd_dataset(sbd):
    """SBD's ``dataset`` folder for ``--sbd`` (benchmark_RELEASE or benchmark_RELEASE/dataset)."""
    require_layout_dir(sbd, SBD_LAYOUT)
    for candidate in (sbd, os.path.join(sbd, 'dataset')):
        if os.path.isdir(os.path.join(candidate, 'cls')):
            return candidate
    raise UserError(f'{sbd}: no cls/ folder; {SBD_LAYOUT}')


def plan_voc12aug(voc, sbd):
    """Check both layouts and list the conversions and the name lists.

    Returns:
        tuple: (VOC2012 folder, list of Job, dict list file name -> sorted names).
    """
    voc2012 = os.path.join(_voc_devkit(voc), 'VOC2012')
    sbd = _sbd_dataset(sbd)
    sets = os.path.join(voc2012, 'ImageSets', 'Segmentation')
    voc_train = set(read_names(os.path.join(sets, 'train.txt'), VOC_LAYOUT))
    voc_names = sorted(voc_train | set(read_names(os.path.join(sets, 'val.txt'), VOC_LAYOUT)))
    sbd_names = {name for split in ('train', 'val') for name in read_names(os.path.join(sbd, f'{split}.txt'),
                                                                            SBD_LAYOUT)}
    aug = sorted(sbd_names - set(voc_names))
    out_dir = os.path.join(voc2012, 'SegmentationClassAug')
    jobs = [Job(os.path.join(voc2012, 'SegmentationClass', f'{name}.png'), os.path.join(out_dir, f'{name}.png'),
                voc_png_labels) for name in voc_names]
    jobs += [Job(os.path.join(sbd, 'cls', f'{name}.mat'), os.path.join(out_dir, f'{name}.png'), sbd_mat_labels)
             for name in aug]
    require_files([job.src for job in jobs], 'a label file for every name in the VOC and SBD train/val lists')
    require_files([os.path.join(voc2012, 'JPEGImages', f'{name}.jpg') for name in voc_names + aug],
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
    return convert_all(jobs, lists, workers, force, desc='voc12aug')
