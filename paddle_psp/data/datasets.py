"""Facts about the supported datasets, in one place: class names, palettes, folder layouts, the ignore index,
how images pair with labels, and which kind a dataset (or config ``type``) is.

The two kinds are PaddleSeg's ``Cityscapes`` (19 train ids) and ``PascalVOC`` (21 classes, VOC 2012 + SBD
"trainaug"). Anything else is handled generically (class names are the indices, VOC's palette).
"""
import glob
import os

import numpy as np

CITYSCAPES = 'Cityscapes'
PASCAL_VOC = 'PascalVOC'

# Label value that marks pixels without a class (borders, ego vehicle, void): never trained on or scored.
IGNORE_INDEX = 255

CITYSCAPES_CLASSES = (
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign', 'vegetation',
    'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle', 'bicycle')
VOC_CLASSES = (
    'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
    'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train',
    'tvmonitor')
# dataset kind -> class names in train-id order
DATASET_CLASSES = {CITYSCAPES: CITYSCAPES_CLASSES, PASCAL_VOC: VOC_CLASSES}

# Cityscapes' official colours of the 19 train ids (cityscapesscripts' labels.py).
CITYSCAPES_COLOURS = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0),
    (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32))

# ----------------------------------------------------------------------------------------------- layouts
CITYSCAPES_IMAGES = 'leftImg8bit'
CITYSCAPES_LABELS = 'gtFine'
IMAGE_SUFFIX = '_leftImg8bit.png'
LABEL_IDS_SUFFIX = '_gtFine_labelIds.png'
TRAIN_IDS_SUFFIX = '_gtFine_labelTrainIds.png'
VOC_SPLITS = os.path.join('VOC2012', 'ImageSets', 'Segmentation')

CITYSCAPES_DOWNLOAD = 'https://www.cityscapes-dataset.com/downloads/'
VOC_DOWNLOAD = 'http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar'
SBD_DOWNLOAD = 'http://home.bharathh.info/pubs/codes/SBD/download.html'
CITYSCAPES_LAYOUT = (
    'expected ROOT/leftImg8bit/SPLIT/CITY/*_leftImg8bit.png and ROOT/gtFine/SPLIT/CITY/*_gtFine_labelIds.png '
    f'as unpacked from leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip ({CITYSCAPES_DOWNLOAD})')
VOC_LAYOUT = ('expected the VOCdevkit folder of VOCtrainval_11-May-2012.tar, holding VOC2012/JPEGImages, '
              f'VOC2012/SegmentationClass and VOC2012/ImageSets/Segmentation ({VOC_DOWNLOAD})')
SBD_LAYOUT = ("expected SBD's benchmark_RELEASE folder from benchmark.tgz or its dataset/ subfolder, holding "
              f'cls/*.mat, train.txt and val.txt ({SBD_DOWNLOAD})')
# dataset kind -> (folders that must exist under dataset_root, command that prepares it)
PREPARED_LAYOUTS = {
    CITYSCAPES: ((CITYSCAPES_IMAGES, CITYSCAPES_LABELS), 'paddleseg prepare cityscapes --root {root}'),
    PASCAL_VOC: ((VOC_SPLITS,), 'paddleseg prepare voc12aug --voc {root} --sbd SBD_DIR'),
}


# ----------------------------------------------------------------------------------------------- kinds
def dataset_kind(dataset):
    """The kind of ``dataset``: ``'Cityscapes'``, ``'PascalVOC'``, or its own type name for any other.

    Args:
        dataset (object|type|str|None): A dataset, its class (a subclass of a known kind counts as that
            kind), or a PaddleSeg type name such as a config's ``val_dataset.type``.

    Returns:
        str|None: The kind (None for None).
    """
    if dataset is None or isinstance(dataset, str):
        return dataset
    cls = dataset if isinstance(dataset, type) else type(dataset)
    for base in cls.__mro__:
        if base.__name__ in DATASET_CLASSES:
            return base.__name__
    return cls.__name__


def label_problem(labels, num_classes, ignore_index, label_path):
    """'' when every value of ``labels`` is a class id or the ignore index, else a message naming the file."""
    labels = np.asarray(labels)
    bad = (labels < 0) | ((labels >= num_classes) & (labels != ignore_index))
    if not bad.any():
        return ''
    values = np.unique(labels[bad])[:5].tolist()
    return (f'{label_path}: label values {values} outside [0, {num_classes}) and not the ignore index '
            f'{ignore_index}; expected class ids')


def class_names(dataset, num_classes):
    """Class names of a dataset kind (see :func:`dataset_kind`); the indices as strings otherwise.

    Args:
        dataset (object|type|str|None): A dataset, its class or its type name.
        num_classes (int): Number of classes; names are used only when their count matches.

    Returns:
        list[str]: ``num_classes`` names.
    """
    names = DATASET_CLASSES.get(dataset_kind(dataset))
    if names is not None and len(names) == num_classes:
        return list(names)
    return [str(i) for i in range(num_classes)]


# The official Cityscapes label id of each of the 19 train ids (cityscapesscripts' labels.py, the ids the
# benchmark server scores); tests/test_datasets.py checks them against cityscapesscripts itself.
CITYSCAPES_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)


def cityscapes_label_ids():
    """The official Cityscapes label id of each train id (:data:`CITYSCAPES_LABEL_IDS`), without needing the
    optional cityscapesscripts.

    Returns:
        np.ndarray: uint8 (19,): ``label_ids[train_id]``.
    """
    return np.array(CITYSCAPES_LABEL_IDS, np.uint8)


# ----------------------------------------------------------------------------------------------- palettes
def voc_palette():
    """The standard Pascal VOC palette: the bits of each index interleaved into R, G, B (0 is black).

    Returns:
        np.ndarray: uint8 (256, 3) RGB.
    """
    palette = np.zeros((256, 3), np.uint8)
    for index in range(256):
        value = index
        for bit in range(8):
            for channel in range(3):
                palette[index, channel] |= ((value >> channel) & 1) << (7 - bit)
            value >>= 3
    return palette


def palette(dataset):
    """The RGB palette (uint8 (256, 3)) of a dataset kind: Cityscapes' colours, else VOC's."""
    colours = voc_palette()
    if dataset_kind(dataset) == CITYSCAPES:
        colours[:len(CITYSCAPES_COLOURS)] = CITYSCAPES_COLOURS
    return colours


# ----------------------------------------------------------------------------------------------- pairing
def cityscapes_frames(root, split, folder, suffix):
    """``{CITY/FRAME: path}`` of the ``ROOT/folder/split/CITY/*suffix`` files."""
    base = os.path.join(root, folder, split)
    return {os.path.relpath(path, base)[:-len(suffix)]: path
            for path in glob.glob(os.path.join(base, '*', '*' + suffix))}


def unpaired_cityscapes_frame(root, split, label_suffix=TRAIN_IDS_SUFFIX):
    """The first Cityscapes frame of ``split`` that has an image but no label, or a label but no image.

    PaddleSeg pairs the sorted image and label lists blindly, so one missing file shifts every later pair.

    Args:
        root (str): Cityscapes root holding ``leftImg8bit/`` and ``gtFine/``.
        split (str): ``train``, ``val`` or ``test``.
        label_suffix (str, optional): The label files to pair: :data:`TRAIN_IDS_SUFFIX` (prepared) or
            :data:`LABEL_IDS_SUFFIX` (official). Default: :data:`TRAIN_IDS_SUFFIX`.

    Returns:
        tuple|None: ``(present path, 'image' or 'label' (what it lacks), missing path)``, or None when every
        image has its label and every label its image.
    """
    places = {'image': (CITYSCAPES_IMAGES, IMAGE_SUFFIX), 'label': (CITYSCAPES_LABELS, label_suffix)}
    frames = {kind: cityscapes_frames(root, split, *place) for kind, place in places.items()}
    for frame in sorted(frames['image'].keys() ^ frames['label'].keys()):
        has, lacks = ('image', 'label') if frame in frames['image'] else ('label', 'image')
        folder, suffix = places[lacks]
        return frames[has][frame], lacks, os.path.join(root, folder, split, frame + suffix)
    return None
