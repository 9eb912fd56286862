"""Submission files for the official test servers (``paddleseg predict --submission``).

The published tables are scored on the val splits; the test splits are scored only by the benchmark servers,
which take the predictions in their own format:

* ``cityscapes``: one 8-bit PNG per test image holding the official Cityscapes label ids (not the 19 train
  ids the model predicts), named as the input ``CITY_SEQ_FRAME_leftImg8bit.png``, in one folder per city
  under ``SAVE_DIR/cityscapes_submission/``, and the same tree zipped as ``SAVE_DIR/cityscapes_submission.zip``
  (the file to upload).
* ``voc``: one palette PNG per test image (pixel values the 21 class ids, VOC's colours), named as the
  image's stem, under ``SAVE_DIR/results/VOC2012/Segmentation/comp6_test_cls/`` (comp6: training data beyond
  VOC 2012, as SBD's trainaug set), and ``results/`` zipped as ``SAVE_DIR/voc2012_submission.zip``.

Every name is checked before any image is predicted: a Cityscapes input must be named as the server's
files are, and no two inputs may give the same output name.
"""
import dataclasses
import os
import re
import zipfile

import numpy as np
from PIL import Image

from paddle_psp.core.atomic import atomic_path
from paddle_psp.core.errors import UserError
from paddle_psp.data import datasets

CITYSCAPES_NAME = re.compile(r'(?P<city>[A-Za-z_]+)_\d{6}_\d{6}' + re.escape(datasets.IMAGE_SUFFIX))
VOC_FOLDER = os.path.join('results', 'VOC2012', 'Segmentation', 'comp6_test_cls')


@dataclasses.dataclass(frozen=True)
class Format:
    """One server's submission format.

    Attributes:
        name (str): What ``--submission`` takes.
        num_classes (int): Classes the model must predict.
        folder (str): Where the PNGs go, relative to the save folder.
        archive (str): The zip to upload, relative to the save folder; it holds the PNGs by their paths
            relative to the save folder.
    """
    name: str
    num_classes: int
    folder: str
    archive: str


FORMATS = {
    'cityscapes': Format('cityscapes', len(datasets.CITYSCAPES_CLASSES), 'cityscapes_submission',
                         'cityscapes_submission.zip'),
    'voc': Format('voc', len(datasets.VOC_CLASSES), VOC_FOLDER, 'voc2012_submission.zip'),
}


def get_format(name, num_classes):
    """The :class:`Format` called ``name``, checked against the model's ``num_classes``.

    Raises:
        UserError: An unknown name, or a model predicting another number of classes.
    """
    if name not in FORMATS:
        raise UserError(f'--submission {name}: unknown; expected one of {", ".join(FORMATS)}')
    found = FORMATS[name]
    if num_classes != found.num_classes:
        raise UserError(f'--submission {name}: the model predicts {num_classes} classes; expected a model of the '
                        f'{found.num_classes} {name} classes')
    return found


def output_names(found, image_paths):
    """Each image's PNG, relative to the save folder, checked before any work.

    Args:
        found (Format): The format.
        image_paths (list[str]): The test images.

    Returns:
        list[str]: Relative paths, one per image.

    Raises:
        UserError: A Cityscapes image not named ``CITY_SEQ_FRAME_leftImg8bit.png``, or two images with one
            output name.
    """
    names = []
    for path in image_paths:
        base = os.path.basename(path)
        if found.name == 'cityscapes':
            match = CITYSCAPES_NAME.fullmatch(base)
            if match is None:
                raise UserError(f'--submission cityscapes: {path}: expected a Cityscapes test image named '
                                f'CITY_SEQ_FRAME{datasets.IMAGE_SUFFIX} (e.g. berlin_000000_000019'
                                f'{datasets.IMAGE_SUFFIX})')
            names.append(os.path.join(found.folder, match.group('city'), base))
        else:
            names.append(os.path.join(found.folder, os.path.splitext(base)[0] + '.png'))
    seen = {}
    for path, name in zip(image_paths, names):
        if name in seen:
            raise UserError(f'--submission {found.name}: {seen[name]} and {path} would both be written as {name}; '
                            'expected one image per name')
        seen[name] = path
    return names


def server_image(found, labels):
    """The PIL image the server takes for the predicted train ids ``labels`` (H, W)."""
    if found.name == 'cityscapes':
        return Image.fromarray(datasets.cityscapes_label_ids()[labels], mode='L')
    image = Image.fromarray(labels.astype(np.uint8), mode='P')
    image.putpalette(datasets.voc_palette().reshape(-1).tolist())
    return image


def write_png(found, path, labels):
    """Write ``labels``' server image to ``path`` (atomically)."""
    with atomic_path(path) as tmp:
        server_image(found, labels).save(tmp, format='PNG')


def write_archive(found, save_dir, names):
    """Zip the PNGs ``names`` (relative to ``save_dir``) as the format's archive; returns its path."""
    archive = os.path.join(save_dir, found.archive)
    with atomic_path(archive) as tmp:
        with zipfile.ZipFile(tmp, 'w', zipfile.ZIP_DEFLATED) as file:
            for name in sorted(names):
                file.write(os.path.join(save_dir, name), name.replace(os.sep, '/'))
    return archive
