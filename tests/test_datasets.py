"""Dataset facts: class names, palettes, kind detection and the Cityscapes image/label pairing check."""
import os

from paddle_psp.data import datasets
from paddle_psp.data.synthetic import make_cityscapes_like


def test_palettes():
    from cityscapesscripts.helpers.labels import labels
    official = {label.trainId: label.color for label in labels if 0 <= label.trainId < 19}
    palette = datasets.palette('Cityscapes')
    assert [tuple(palette[i]) for i in range(19)] == [official[i] for i in range(19)]
    voc = datasets.palette('PascalVOC')
    expected = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 4: (0, 0, 128),
                15: (192, 128, 128), 20: (0, 64, 128), 255: (224, 224, 192)}
    assert {i: tuple(voc[i]) for i in expected} == expected
    assert voc.shape == (256, 3) and len({tuple(c) for c in voc}) == 256


def test_cityscapes_label_ids_are_the_official_table():
    from cityscapesscripts.helpers.labels import trainId2label
    assert list(datasets.cityscapes_label_ids()) == [trainId2label[train_id].id for train_id in range(19)]


def test_class_names():
    names = datasets.class_names('Cityscapes', 19)
    assert len(names) == 19 and names[0] == 'road' and names[10] == 'sky' and names[18] == 'bicycle'
    names = datasets.class_names('PascalVOC', 21)
    assert names[0] == 'background' and names[15] == 'person' and names[20] == 'tvmonitor'
    assert datasets.class_names('Cityscapes', 5) == ['0', '1', '2', '3', '4']  # count differs: indices
    assert datasets.class_names('Dataset', 3) == ['0', '1', '2']


def test_dataset_kind_finds_known_base_class():
    from paddleseg.datasets import Cityscapes

    class MyCity(Cityscapes):
        def __init__(self):
            pass
    assert datasets.dataset_kind(MyCity()) == 'Cityscapes'
    assert datasets.dataset_kind(MyCity) == 'Cityscapes'
    assert datasets.dataset_kind('PascalVOC') == 'PascalVOC'
    assert datasets.dataset_kind(object()) == 'object'
    assert datasets.class_names(MyCity(), 19)[0] == 'road'


def test_unpaired_cityscapes_frame(tmp_path):
    root = make_cityscapes_like(str(tmp_path / 'city'), num_train=2, num_val=1, size=(32, 16))
    assert datasets.unpaired_cityscapes_frame(root, 'train') is None
    label = os.path.join(root, 'gtFine', 'train', 'synthcity', 'synthcity_000001_000019' + datasets.TRAIN_IDS_SUFFIX)
    os.remove(label)
    present, lacks, missing = datasets.unpaired_cityscapes_frame(root, 'train')
    assert lacks == 'label' and missing == label and present.endswith('synthcity_000001_000019_leftImg8bit.png')
    assert datasets.unpaired_cityscapes_frame(root, 'val') is None
