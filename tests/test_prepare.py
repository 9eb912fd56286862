"""``paddleseg prepare``: tiny Cityscapes and VOC 2012 + SBD trees in their official formats, converted and
checked pixel by pixel, then read back by PaddleSeg's own ``Cityscapes`` and ``PascalVOC`` datasets."""
import io
import os
import sys

import cv2
import numpy as np
import pytest
import scipy.io
import scipy.sparse
from PIL import Image

import paddle_psp_cli as cli
from paddle_psp.data import prepare
from paddle_psp.core.errors import UserError

# Official Cityscapes label id -> train id (the 19 evaluated classes); every other id 0..33 is ignored (255).
# Written out here from the Cityscapes label table, independently of the code under test.
CITYSCAPES_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                       25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
CITYSCAPES_FRAMES = {'train': ['aachen/aachen_000000_000019', 'aachen/aachen_000001_000019',
                               'bochum/bochum_000000_000313'],
                     'val': ['frankfurt/frankfurt_000000_000294', 'lindau/lindau_000000_000019']}
VOC_TRAIN = ['2007_000032', '2007_000039']
VOC_VAL = ['2007_000033', '2007_000042']
SBD_TRAIN = ['2008_000002', '2007_000032', '2008_000003', '2007_000033']  # two also in VOC
SBD_VAL = ['2008_000007', '2007_000042', '2008_000008']
AUG = ['2008_000002', '2008_000003', '2008_000007', '2008_000008']  # SBD train+val minus VOC train+val


# ---------------------------------------------------------------- building the official layouts

def cityscapes_label_ids(rng, shape=(8, 12)):
    """Random label ids 0..33 that surely include ignored ones (0, 4, 6) and the ends of the table."""
    ids = rng.randint(0, 34, size=shape).astype(np.uint8)
    ids[0, :6] = [0, 7, 33, 6, 4, 26]
    return ids


def make_cityscapes(root, seed=0):
    """leftImg8bit/ + gtFine/ as in the official zips (with color/instance/polygon decoys).

    Returns:
        dict: split/city/frame -> label ids array.
    """
    rng = np.random.RandomState(seed)
    label_ids = {}
    for split, frames in CITYSCAPES_FRAMES.items():
        for frame in frames:
            stem = os.path.join(split, *frame.split('/'))
            ids = cityscapes_label_ids(rng)
            os.makedirs(os.path.dirname(os.path.join(root, 'gtFine', stem)), exist_ok=True)
            os.makedirs(os.path.dirname(os.path.join(root, 'leftImg8bit', stem)), exist_ok=True)
            cv2.imwrite(os.path.join(root, 'leftImg8bit', stem + '_leftImg8bit.png'),
                        rng.randint(0, 256, size=ids.shape + (3,)).astype(np.uint8))
            Image.fromarray(ids, 'L').save(os.path.join(root, 'gtFine', stem + '_gtFine_labelIds.png'))
            Image.fromarray(rng.randint(0, 256, ids.shape + (3,)).astype(np.uint8)).save(
                os.path.join(root, 'gtFine', stem + '_gtFine_color.png'))
            Image.fromarray(ids.astype(np.uint16) * 1000).save(
                os.path.join(root, 'gtFine', stem + '_gtFine_instanceIds.png'))
            with open(os.path.join(root, 'gtFine', stem + '_gtFine_polygons.json'), 'w') as f:
                f.write('{"imgHeight": 8, "imgWidth": 12, "objects": []}')
            label_ids[f'{split}/{frame}'] = ids
    return label_ids


def expected_train_ids(ids):
    return np.vectorize(lambda i: CITYSCAPES_TRAIN_ID.get(int(i), 255))(ids).astype(np.uint8)


def voc_palette():
    """The PASCAL VOC colour map (bit-interleaved class index)."""
    palette = []
    for index in range(256):
        rgb = [0, 0, 0]
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((index >> (3 * bit + channel)) & 1) << (7 - bit)
        palette += rgb
    return palette


def voc_class_ids(rng, shape):
    """Random class ids 0..20 with a 255 'border' row and column like VOC's object outlines."""
    ids = rng.randint(0, 21, size=shape).astype(np.uint8)
    ids[1, :] = 255
    ids[:, 2] = 255
    return ids


def sbd_struct(segmentation):
    """The GTcls struct of an SBD cls/*.mat: Boundaries (21x1 cell of sparse), Segmentation, CategoriesPresent."""
    boundaries = np.empty((21, 1), dtype=object)
    for index in range(21):
        boundaries[index, 0] = scipy.sparse.csc_matrix(segmentation == index + 1, dtype=np.uint8)
    present = np.unique(segmentation[segmentation > 0]).astype(np.uint8).reshape(-1, 1)
    return {'Boundaries': boundaries, 'Segmentation': segmentation, 'CategoriesPresent': present}


def write_names(path, names):
    with open(path, 'w') as f:
        f.write(''.join(name + '\n' for name in names))


def make_voc_sbd(tmp_path, seed=0):
    """VOCdevkit/VOC2012 (palette SegmentationClass) and SBD's benchmark_RELEASE/dataset (cls/*.mat).

    Returns:
        tuple: (VOCdevkit path, SBD dataset path, dict name -> VOC label, dict name -> SBD label).
    """
    rng = np.random.RandomState(seed)
    voc2012 = tmp_path / 'VOCdevkit' / 'VOC2012'
    sbd = tmp_path / 'benchmark_RELEASE' / 'dataset'
    for folder in (voc2012 / 'JPEGImages', voc2012 / 'SegmentationClass', voc2012 / 'ImageSets' / 'Segmentation',
                   sbd / 'cls', sbd / 'img', sbd / 'inst'):
        folder.mkdir(parents=True)
    shapes = {}
    for name in sorted(set(VOC_TRAIN + VOC_VAL + SBD_TRAIN + SBD_VAL)):
        shapes[name] = (rng.randint(6, 10), rng.randint(6, 10))
        image = rng.randint(0, 256, size=shapes[name] + (3,)).astype(np.uint8)
        cv2.imwrite(str(voc2012 / 'JPEGImages' / f'{name}.jpg'), image)
    voc_labels = {}
    for name in VOC_TRAIN + VOC_VAL:
        voc_labels[name] = voc_class_ids(rng, shapes[name])
        png = Image.fromarray(voc_labels[name], 'P')
        png.putpalette(voc_palette())
        png.save(voc2012 / 'SegmentationClass' / f'{name}.png')
    sbd_labels = {}
    for name in SBD_TRAIN + SBD_VAL:
        sbd_labels[name] = rng.randint(0, 21, size=shapes[name]).astype(np.uint8)
        scipy.io.savemat(sbd / 'cls' / f'{name}.mat', {'GTcls': sbd_struct(sbd_labels[name])})
        cv2.imwrite(str(sbd / 'img' / f'{name}.jpg'), np.zeros(shapes[name] + (3,), np.uint8))
    write_names(voc2012 / 'ImageSets' / 'Segmentation' / 'train.txt', VOC_TRAIN)
    write_names(voc2012 / 'ImageSets' / 'Segmentation' / 'val.txt', VOC_VAL)
    write_names(voc2012 / 'ImageSets' / 'Segmentation' / 'trainval.txt', sorted(VOC_TRAIN + VOC_VAL))
    write_names(sbd / 'train.txt', SBD_TRAIN)
    write_names(sbd / 'val.txt', SBD_VAL)
    return tmp_path / 'VOCdevkit', sbd, voc_labels, sbd_labels


def read_png(path):
    with Image.open(path) as image:
        return image.mode, np.asarray(image)


def read_lines(path):
    with open(path) as f:
        return f.read().splitlines()


def mtimes(paths):
    return {str(path): os.stat(path).st_mtime_ns for path in paths}


def temp_files(root):
    return [path for path in root.rglob('*') if path.name.endswith('.tmp')]


def normalize():
    from paddleseg.transforms import Normalize
    return [Normalize()]


# ---------------------------------------------------------------- Cityscapes

def cityscapes_outputs(root):
    return sorted((root / 'gtFine').glob('*/*/*_gtFine_labelTrainIds.png'))


def test_cityscapes_train_ids_lists_and_paddleseg_reads_them(tmp_path, capsys):
    from paddleseg.datasets import Cityscapes
    label_ids = make_cityscapes(tmp_path)
    assert prepare.main(['cityscapes', '--root', str(tmp_path)]) == 0  # two worker processes
    assert 'cityscapes: converted 5 label images (0 already up to date)' in capsys.readouterr().out

    assert len(cityscapes_outputs(tmp_path)) == 5
    for stem, ids in label_ids.items():
        mode, train_ids = read_png(tmp_path / 'gtFine' / f'{stem}_gtFine_labelTrainIds.png')
        assert mode == 'L'
        np.testing.assert_array_equal(train_ids, expected_train_ids(ids))
        assert train_ids[0, :6].tolist() == [255, 0, 18, 255, 255, 13]
    for split, frames in CITYSCAPES_FRAMES.items():
        assert read_lines(tmp_path / f'{split}.txt') == [
            f'leftImg8bit/{split}/{frame}_leftImg8bit.png gtFine/{split}/{frame}_gtFine_labelTrainIds.png'
            for frame in sorted(frames)]

    for split, frames in CITYSCAPES_FRAMES.items():
        dataset = Cityscapes(transforms=normalize(), dataset_root=str(tmp_path), mode=split)
        assert len(dataset) == len(frames)
        for index, (image_path, label_path) in enumerate(dataset.file_list):
            stem = os.path.relpath(label_path, tmp_path / 'gtFine')[:-len('_gtFine_labelTrainIds.png')]
            assert os.path.relpath(image_path, tmp_path / 'leftImg8bit') == stem + '_leftImg8bit.png'
            sample = dataset[index]
            assert sample['img'].shape == (3, 8, 12)
            np.testing.assert_array_equal(np.squeeze(sample['label']), expected_train_ids(label_ids[stem]))


def test_cityscapes_second_run_converts_nothing_then_resumes_and_refreshes(tmp_path, capsys):
    label_ids = make_cityscapes(tmp_path)
    prepare.main(['cityscapes', '--root', str(tmp_path), '--workers', '1'])
    outputs = cityscapes_outputs(tmp_path)
    written = mtimes(outputs + [tmp_path / 'train.txt', tmp_path / 'val.txt'])
    capsys.readouterr()

    prepare.main(['cityscapes', '--root', str(tmp_path)])
    out = capsys.readouterr().out
    assert 'cityscapes: nothing to convert; all 5 label images are up to date' in out
    assert out.count('up to date:') == 2
    assert mtimes(outputs + [tmp_path / 'train.txt', tmp_path / 'val.txt']) == written

    outputs[1].unlink()
    source = str(outputs[3]).replace('_labelTrainIds.png', '_labelIds.png')
    later = os.stat(outputs[3]).st_mtime + 10
    os.utime(source, (later, later))
    prepare.main(['cityscapes', '--root', str(tmp_path)])
    assert 'converted 2 label images (3 already up to date)' in capsys.readouterr().out
    for output in (outputs[1], outputs[3]):
        stem = os.path.relpath(output, tmp_path / 'gtFine')[:-len('_gtFine_labelTrainIds.png')]
        np.testing.assert_array_equal(read_png(output)[1], expected_train_ids(label_ids[stem]))

    prepare.main(['cityscapes', '--root', str(tmp_path), '--force', '--workers', '1'])
    assert 'converted 5 label images (0 already up to date)' in capsys.readouterr().out


def test_cityscapes_interrupted_run_leaves_no_partial_png_and_resumes(tmp_path, monkeypatch, capsys):
    label_ids = make_cityscapes(tmp_path)
    real_replace, calls = os.replace, []

    def replace_then_die(src, dst):
        calls.append(dst)
        if len(calls) == 3:  # the third PNG is fully written to its temporary file, then the run is killed
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, 'replace', replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        prepare.main(['cityscapes', '--root', str(tmp_path), '--workers', '1'])
    monkeypatch.setattr(os, 'replace', real_replace)
    assert len(cityscapes_outputs(tmp_path)) == 2
    assert not os.path.exists(calls[2])
    assert temp_files(tmp_path) == []
    assert not (tmp_path / 'train.txt').exists()

    prepare.main(['cityscapes', '--root', str(tmp_path), '--workers', '1'])
    assert 'converted 3 label images (2 already up to date)' in capsys.readouterr().out
    for stem, ids in label_ids.items():
        np.testing.assert_array_equal(read_png(tmp_path / 'gtFine' / f'{stem}_gtFine_labelTrainIds.png')[1],
                                      expected_train_ids(ids))


def test_progress_bar_only_on_a_terminal(tmp_path, monkeypatch, capsys):
    make_cityscapes(tmp_path)
    prepare.main(['cityscapes', '--root', str(tmp_path), '--workers', '1'])
    assert capsys.readouterr().err == ''

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, 'stderr', terminal)
    prepare.main(['cityscapes', '--root', str(tmp_path), '--workers', '1', '--force'])
    assert 'cityscapes' in terminal.getvalue() and '5/5' in terminal.getvalue()


# ---------------------------------------------------------------- VOC 2012 + SBD

def test_voc12aug_class_ids_lists_and_paddleseg_reads_trainaug(tmp_path, capsys):
    from paddleseg.datasets import PascalVOC
    devkit, sbd, voc_labels, sbd_labels = make_voc_sbd(tmp_path)
    voc_pngs = devkit / 'VOC2012' / 'SegmentationClass'
    segmentation_class = {path.name: path.read_bytes() for path in voc_pngs.iterdir()}
    assert prepare.main(['voc12aug', '--voc', str(devkit), '--sbd', str(sbd)]) == 0
    assert 'voc12aug: converted 8 label images (0 already up to date)' in capsys.readouterr().out

    expected = {**{name: sbd_labels[name] for name in AUG}, **voc_labels}  # VOC's annotation wins
    aug_dir = devkit / 'VOC2012' / 'SegmentationClassAug'
    assert sorted(path.name for path in aug_dir.iterdir()) == sorted(f'{name}.png' for name in expected)
    for name, labels in expected.items():
        mode, written = read_png(aug_dir / f'{name}.png')
        assert mode == 'L'
        np.testing.assert_array_equal(written, labels)
    assert (read_png(aug_dir / '2007_000032.png')[1] == 255).any()
    assert {path.name: path.read_bytes() for path in voc_pngs.iterdir()} == segmentation_class
    sets = devkit / 'VOC2012' / 'ImageSets' / 'Segmentation'
    assert read_lines(sets / 'aug.txt') == AUG
    assert read_lines(sets / 'trainaug.txt') == sorted(VOC_TRAIN + AUG)

    dataset = PascalVOC(transforms=normalize(), dataset_root=str(devkit), mode='trainaug')
    assert len(dataset) == len(VOC_TRAIN) + len(AUG)
    names = []
    for index, (image_path, label_path) in enumerate(dataset.file_list):
        name = os.path.basename(label_path)[:-len('.png')]
        assert os.path.basename(image_path) == f'{name}.jpg'
        sample = dataset[index]
        assert sample['img'].shape[1:] == expected[name].shape
        np.testing.assert_array_equal(sample['label'], expected[name])
        names.append(name)
    assert sorted(names) == sorted(VOC_TRAIN + AUG)


def test_voc12aug_second_run_converts_nothing_with_alternative_folder_names(tmp_path, capsys):
    devkit, sbd, _, _ = make_voc_sbd(tmp_path)
    prepare.main(['voc12aug', '--voc', str(devkit), '--sbd', str(sbd), '--workers', '1'])
    sets = devkit / 'VOC2012' / 'ImageSets' / 'Segmentation'
    outputs = sorted((devkit / 'VOC2012' / 'SegmentationClassAug').iterdir()) + [sets / 'aug.txt',
                                                                                  sets / 'trainaug.txt']
    written = mtimes(outputs)
    capsys.readouterr()

    # the VOC2012 folder itself and SBD's benchmark_RELEASE folder name the same trees
    prepare.main(['voc12aug', '--voc', str(devkit / 'VOC2012'), '--sbd', str(sbd.parent)])
    out = capsys.readouterr().out
    assert 'voc12aug: nothing to convert; all 8 label images are up to date' in out
    assert f'up to date: {sets / "aug.txt"} (4 lines)' in out
    assert mtimes(outputs) == written


# ---------------------------------------------------------------- bad input

def one_line_error(argv):
    """Run ``prepare`` expecting a UserError; return its message after checking it is one line."""
    with pytest.raises(UserError) as caught:
        prepare.main(argv)
    message = str(caught.value)
    assert '\n' not in message
    return message


def test_cityscapes_missing_root_or_gtfine_says_what_is_expected(tmp_path):
    message = one_line_error(['cityscapes', '--root', str(tmp_path / 'nowhere')])
    assert message.startswith(f'{tmp_path / "nowhere"}: no such directory; expected ')
    assert 'gtFine/SPLIT/CITY/*_gtFine_labelIds.png' in message
    assert 'https://www.cityscapes-dataset.com/downloads/' in message

    (tmp_path / 'leftImg8bit').mkdir()
    message = one_line_error(['cityscapes', '--root', str(tmp_path)])
    assert message.startswith(f'{tmp_path / "gtFine"}: no such directory')

    (tmp_path / 'gtFine' / 'train' / 'aachen').mkdir(parents=True)
    message = one_line_error(['cityscapes', '--root', str(tmp_path)])
    assert message.startswith(f'{tmp_path / "gtFine"}: no SPLIT/CITY/*_gtFine_labelIds.png')


def damage_label(path, how):
    if how == 'truncated':
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
        return 'cannot decode PNG'
    if how == 'rgb':
        Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(path)
        return 'PNG mode RGB'
    ids = np.asarray(Image.open(path)).copy()
    ids[3, 4], ids[5, 6] = 200, 34
    Image.fromarray(ids, 'L').save(path)
    return 'label ids 34, 200 not in the Cityscapes label table; expected ids 0..33'


@pytest.mark.parametrize('how', ['truncated', 'rgb', 'out of range'])
def test_cityscapes_bad_label_png_is_named_and_nothing_half_written(tmp_path, how):
    make_cityscapes(tmp_path)
    bad = tmp_path / 'gtFine' / 'train' / 'bochum' / 'bochum_000000_000313_gtFine_labelIds.png'
    reason = damage_label(bad, how)
    message = one_line_error(['cityscapes', '--root', str(tmp_path)])  # error raised in a worker process
    assert message.startswith(f'{bad}: {reason}')
    assert not bad.with_name('bochum_000000_000313_gtFine_labelTrainIds.png').exists()
    assert temp_files(tmp_path) == []
    assert not (tmp_path / 'train.txt').exists()


def test_cityscapes_label_without_image_is_named(tmp_path):
    make_cityscapes(tmp_path)
    image = tmp_path / 'leftImg8bit' / 'val' / 'lindau' / 'lindau_000000_000019_leftImg8bit.png'
    image.unlink()
    message = one_line_error(['cityscapes', '--root', str(tmp_path)])
    assert message.startswith(f'{image}: missing for its gtFine label')
    assert cityscapes_outputs(tmp_path) == []


def test_user_error_through_the_cli_is_one_line_and_exit_status_2(tmp_path, capsys):
    assert cli.main(['prepare', 'cityscapes', '--root', str(tmp_path / 'nowhere')]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f'paddleseg prepare: error: {tmp_path / "nowhere"}: no such directory')
    assert '\n' not in err


@pytest.mark.parametrize('entry, argv', [(prepare.main, ['--help']), (cli.main, ['prepare', '--help'])])
def test_help_lists_both_datasets(entry, argv, capsys):
    with pytest.raises(SystemExit) as caught:
        entry(argv)
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert 'paddleseg prepare' in out and 'cityscapes' in out and 'voc12aug' in out


def corrupt_mat(path):
    path.write_bytes(path.read_bytes()[:200])
    return 'cannot read MAT file'


def mat_without_gtcls(path):
    scipy.io.savemat(path, {'GTinst': {'Segmentation': np.zeros((6, 6), np.uint8)}})
    return "no 'GTcls' struct with a 'Segmentation' field"


def mat_out_of_range(path):
    segmentation = np.zeros((6, 6), np.uint8)
    segmentation[2, 2] = 21
    scipy.io.savemat(path, {'GTcls': sbd_struct(segmentation)})
    return 'label values 21 out of range; expected class ids 0..20 or 255'


@pytest.mark.parametrize('damage', [corrupt_mat, mat_without_gtcls, mat_out_of_range])
def test_voc12aug_bad_mat_is_named_and_nothing_half_written(tmp_path, damage):
    devkit, sbd, _, _ = make_voc_sbd(tmp_path)
    bad = sbd / 'cls' / '2008_000007.mat'
    reason = damage(bad)
    message = one_line_error(['voc12aug', '--voc', str(devkit), '--sbd', str(sbd)])
    assert message.startswith(f'{bad}: {reason}')
    assert not (devkit / 'VOC2012' / 'SegmentationClassAug' / '2008_000007.png').exists()
    assert temp_files(tmp_path) == []
    assert not (devkit / 'VOC2012' / 'ImageSets' / 'Segmentation' / 'aug.txt').exists()


def test_voc12aug_bad_voc_png_and_missing_inputs_are_named(tmp_path):
    devkit, sbd, voc_labels, _ = make_voc_sbd(tmp_path)
    png = devkit / 'VOC2012' / 'SegmentationClass' / '2007_000039.png'
    labels = voc_labels['2007_000039'].copy()
    labels[0, 0] = 30
    image = Image.fromarray(labels, 'P')
    image.putpalette(voc_palette())
    image.save(png)
    message = one_line_error(['voc12aug', '--voc', str(devkit), '--sbd', str(sbd), '--workers', '1'])
    assert message.startswith(f'{png}: label values 30 out of range')
    assert temp_files(tmp_path) == []

    jpeg = devkit / 'VOC2012' / 'JPEGImages' / '2008_000003.jpg'
    jpeg.unlink()
    assert one_line_error(['voc12aug', '--voc', str(devkit), '--sbd', str(sbd)]).startswith(f'{jpeg}: missing')
    (sbd / 'val.txt').unlink()
    assert one_line_error(['voc12aug', '--voc', str(devkit), '--sbd', str(sbd)]).startswith(
        f'{sbd / "val.txt"}: missing; expected SBD')
    message = one_line_error(['voc12aug', '--voc', str(tmp_path), '--sbd', str(sbd)])
    assert message.startswith(f'{tmp_path / "VOC2012"}: no such directory; expected the VOCdevkit folder')
    message = one_line_error(['voc12aug', '--voc', str(devkit), '--sbd', str(tmp_path)])
    assert message.startswith(f'{tmp_path}: no cls/ folder; expected SBD')
