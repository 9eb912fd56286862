"""Test-server submissions (``paddleseg predict --submission``, ``Segmenter.write_submission``) on generated
test-split layouts: every image present, named as the server wants, the train ids mapped back exactly."""
import io
import os
import re
import shutil
import zipfile

import numpy as np
import paddle
import pytest
import yaml
from PIL import Image

from conftest import tiny_config_dict, write_checkpoints
import paddle_psp
import paddle_psp_cli as cli
from paddle_psp.config import load_config
from paddle_psp.core.errors import UserError
from paddle_psp.data import datasets
from paddle_psp.data.cityscapes import cityscapes_lut

CITIES = ('berlin', 'bonn')


@pytest.fixture(scope='module')
def setup(synthetic_root, tmp_path_factory):
    """A Cityscapes test split (the 4 val images in 2 cities), a VOC 2012 test split (the same images as
    JPEGs, listed in ImageSets/Segmentation/test.txt), and tiny 19- and 21-class models."""
    root = tmp_path_factory.mktemp('submission')
    paths = write_checkpoints(root, synthetic_root, seed=3)
    sources = sorted(os.path.join(r, f) for r, _, fs in os.walk(os.path.join(synthetic_root, 'leftImg8bit', 'val'))
                     for f in fs)
    city_images = []
    for index, source in enumerate(sources):
        city = CITIES[index % 2]
        target = root / 'cityscapes' / 'leftImg8bit' / 'test' / city / f'{city}_{index:06d}_000019_leftImg8bit.png'
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
        city_images.append(str(target))
    voc = root / 'VOCdevkit' / 'VOC2012'
    (voc / 'JPEGImages').mkdir(parents=True)
    (voc / 'ImageSets' / 'Segmentation').mkdir(parents=True)
    ids = [f'2008_{index:06d}' for index in range(len(sources))]
    for name, source in zip(ids, sources):
        Image.open(source).convert('RGB').save(voc / 'JPEGImages' / f'{name}.jpg', quality=95)
    (voc / 'ImageSets' / 'Segmentation' / 'test.txt').write_text(''.join(f'{name}\n' for name in ids))
    voc_config = str(root / 'voc.yml')
    dic = tiny_config_dict(synthetic_root)
    for key in ('train_dataset', 'val_dataset'):  # PaddleSeg's PascalVOC (21 classes), built only if used
        dic[key].update(type='PascalVOC', dataset_root=str(root / 'VOCdevkit'))
    with open(voc_config, 'w') as file:
        yaml.safe_dump(dic, file)
    paddle.seed(4)
    paddle.save(load_config(voc_config).model.state_dict(), str(root / 'voc.pdparams'))
    return dict(paths, root=root, city_root=str(root / 'cityscapes' / 'leftImg8bit' / 'test'),
                city_images=city_images, sources=sources, voc_list=str(voc / 'ImageSets' / 'Segmentation' / 'test.txt'),
                voc_ids=ids, voc_config=voc_config, voc_checkpoint=str(root / 'voc.pdparams'))


def zip_pngs(path):
    """{member name: PIL image} of a submission zip."""
    with zipfile.ZipFile(path) as archive:
        return {name: Image.open(io.BytesIO(archive.read(name))) for name in archive.namelist()}


def test_cityscapes_submission_holds_label_ids_per_city(setup, tmp_path):
    save_dir = str(tmp_path / 'out')
    assert cli.main(['predict', '--config', setup['config'], '--model_path', setup['checkpoint'], '--dygraph',
                     '--image_path', setup['city_root'], '--save_dir', save_dir, '--submission', 'cityscapes']) == 0
    assert not os.path.exists(os.path.join(save_dir, 'pseudo_color_prediction'))
    members = zip_pngs(os.path.join(save_dir, 'cityscapes_submission.zip'))
    expected = sorted(f'cityscapes_submission/{os.path.basename(os.path.dirname(p))}/{os.path.basename(p)}'
                      for p in setup['city_images'])
    assert sorted(members) == expected
    seg = paddle_psp.Segmenter(setup['checkpoint'], setup['config'], fast=False, cpu_tuning=False)
    official = {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33}
    for name, path in zip(expected, sorted(setup['city_images'], key=lambda p: (os.path.dirname(p), p))):
        png = members[name]
        assert png.mode == 'L' and png.size == (128, 64)
        ids = np.array(png)
        assert set(np.unique(ids)) <= official
        np.testing.assert_array_equal(cityscapes_lut()[ids], seg.predict(path).label_map)  # mapped back exactly
        np.testing.assert_array_equal(ids, np.array(Image.open(os.path.join(save_dir, name))))
    again = seg.write_submission(setup['city_root'], str(tmp_path / 'api'), 'cityscapes')
    assert again == str(tmp_path / 'api' / 'cityscapes_submission.zip')
    for name, png in zip_pngs(again).items():
        np.testing.assert_array_equal(np.array(png), np.array(members[name]))


def test_voc_submission_is_comp6_palette_pngs(setup, tmp_path):
    seg = paddle_psp.Segmenter(setup['voc_checkpoint'], setup['voc_config'], fast=False, cpu_tuning=False)
    archive = seg.write_submission(setup['voc_list'], str(tmp_path), 'voc')
    members = zip_pngs(archive)
    assert sorted(members) == [f'results/VOC2012/Segmentation/comp6_test_cls/{name}.png' for name in setup['voc_ids']]
    jpegs = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(setup['voc_list']))), 'JPEGImages')
    for name in setup['voc_ids']:
        png = members[f'results/VOC2012/Segmentation/comp6_test_cls/{name}.png']
        assert png.mode == 'P'
        assert png.getpalette()[:63] == datasets.voc_palette()[:21].reshape(-1).tolist()
        np.testing.assert_array_equal(np.array(png), seg.predict(os.path.join(jpegs, name + '.jpg')).label_map)


@pytest.mark.parametrize('server, model, rename, message', [
    ('voc', 'city', None, r'--submission voc: the model predicts 19 classes; expected a model of the 21 voc classes'),
    ('cityscapes', 'voc', None, r'predicts 21 classes; expected a model of the 19 cityscapes'),
    ('cityscapes', 'city', 'street.png', r'street.png: expected a Cityscapes test image named CITY_SEQ_FRAME'),
])
def test_bad_submission_is_one_line_before_work(setup, tmp_path, capsys, server, model, rename, message):
    images = setup['city_root']
    if rename:
        images = str(tmp_path / 'images')
        shutil.copytree(setup['city_root'], images)
        os.rename(os.path.join(images, 'berlin', os.path.basename(setup['city_images'][0])),
                  os.path.join(images, 'berlin', rename))
    config, checkpoint = ((setup['config'], setup['checkpoint']) if model == 'city' else
                          (setup['voc_config'], setup['voc_checkpoint']))
    assert cli.main(['predict', '--config', config, '--model_path', checkpoint, '--image_path', images,
                     '--save_dir', str(tmp_path / 'out'), '--submission', server]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('paddleseg predict: error: ')
    assert re.search(message, err[0]), err[0]
    assert not os.path.exists(tmp_path / 'out')
    with pytest.raises(UserError, match=message.replace('--submission voc: ', '')):
        paddle_psp.Segmenter(checkpoint, config, fast=False, cpu_tuning=False).write_submission(
            images, str(tmp_path / 'api'), server)


def test_cityscapes_official_evaluation_scores_the_submission_as_val_does(setup, tmp_path):
    """cityscapesscripts' own evaluation (what the server runs) finds one prediction per image in the unpacked
    zip and scores it against label-id ground truth exactly as ``evaluate`` scores the train ids."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official
    seg = paddle_psp.Segmenter(setup['checkpoint'], setup['config'], fast=False, cpu_tuning=False)
    with zipfile.ZipFile(seg.write_submission(setup['city_root'], str(tmp_path / 'out'), 'cityscapes')) as archive:
        archive.extractall(tmp_path / 'results')
    to_label_ids = np.zeros(256, np.uint8)  # train id -> label id; 255 (ignored) -> 0 (unlabeled, not scored)
    to_label_ids[:19] = datasets.cityscapes_label_ids()
    ground_truth = []
    for image, source in zip(setup['city_images'], setup['sources']):
        train_ids = np.array(Image.open(source.replace('leftImg8bit', 'gtFine').replace('.png', '_labelTrainIds.png')))
        path = str(tmp_path / 'gt' / os.path.basename(image).replace('leftImg8bit', 'gtFine_labelIds'))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(to_label_ids[train_ids]).save(path)
        ground_truth.append(path)
    args = official.args
    args.predictionPath, args.predictionWalk = str(tmp_path / 'results'), None
    args.evalInstLevelScore, args.JSONOutput, args.quiet = False, False, True
    predictions = [official.getPrediction(args, path) for path in ground_truth]  # exits unless exactly one each
    result = official.evaluateImgLists(predictions, ground_truth, args)
    ours = seg.evaluate()
    assert ours['num_images'] == len(ground_truth) == 4
    for name, iou in zip(ours['class_names'], ours['class_IoU']):
        official_iou = result['classScores'][name]
        assert (np.isnan(iou) and np.isnan(official_iou)) or abs(iou - official_iou) < 1e-9, name
    assert sum(not np.isnan(v) for v in ours['class_IoU']) >= 3
