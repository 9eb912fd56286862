"""``paddle_psp.Segmenter``: the same predictions as ``paddleseg predict`` (pixel for pixel) and the same
metrics as ``paddleseg val``, for ss, flip, ms+flip and sliding window; what ``predict`` accepts; bad input."""
import functools
import http.server
import json
import os
import threading

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import write_checkpoints
import paddle_psp
from paddle_psp.core.errors import UserError
from paddle_psp.evaluation import evaluate
from paddle_psp.evaluation.evaluate import metrics_json
from paddle_psp.inference import predict

# name -> (Segmenter options, the flags of paddleseg predict / val; --aug_pred / --aug_eval are added)
CASES = {
    'ss': ({}, []),
    'flip': ({'flip_horizontal': True}, ['--flip_horizontal']),
    'ms_flip': ({'scales': (0.75, 1.0, 1.25), 'flip_horizontal': True},
                ['--scales', '0.75', '1.0', '1.25', '--flip_horizontal']),
    'slide': ({'is_slide': True, 'crop_size': (64, 48), 'stride': (48, 32)},
              ['--is_slide', '--crop_size', '64', '48', '--stride', '48', '32']),
}


@pytest.fixture(scope='module')
def setup(synthetic_root, tmp_path_factory):
    """A tiny PSPNet config and random checkpoint, the val images, and a dygraph Segmenter of them."""
    paths = write_checkpoints(tmp_path_factory.mktemp('api'), synthetic_root, seed=5)
    image_dir = os.path.join(synthetic_root, 'leftImg8bit', 'val')
    images = sorted(os.path.join(r, f) for r, _, fs in os.walk(image_dir) for f in fs)
    seg = paddle_psp.Segmenter(paths['checkpoint'], paths['config'], fast=False, cpu_tuning=False)
    return dict(paths, image_dir=image_dir, images=images, seg=seg, cache=str(tmp_path_factory.mktemp('cache')))


def cli_flags(case, verb):
    flags = CASES[case][1]
    if flags and case != 'slide':
        flags = [{'predict': '--aug_pred', 'val': '--aug_eval'}[verb]] + flags
    return flags


@pytest.mark.parametrize('case, fast', [(case, False) for case in sorted(CASES)] + [('ms_flip', True),
                                                                                      ('slide', True)])
def test_predictions_and_metrics_equal_the_commands(setup, tmp_path, monkeypatch, case, fast):
    """Dygraph for every case, and the fast path (one export cache for the commands and the Segmenter)."""
    monkeypatch.setenv('PADDLE_PSP_CACHE', setup['cache'])
    seg = paddle_psp.Segmenter(setup['checkpoint'], setup['config'], fast=fast, cpu_tuning=False, **CASES[case][0])
    save_dir = str(tmp_path / 'out')
    common = ['--config', setup['config'], '--model_path', setup['checkpoint']] + ([] if fast else ['--dygraph'])
    assert predict.main(common + ['--image_path', setup['image_dir'], '--save_dir', save_dir]
                        + cli_flags(case, 'predict')) == 0
    predictions = seg.predict(setup['image_dir'])
    assert [p.path for p in predictions] == setup['images']
    if case != 'ss':  # the options are honoured: here they change the prediction
        plain = setup['seg'].predict(setup['image_dir'])
        assert any((a.label_map != b.label_map).any() for a, b in zip(predictions, plain))
    for prediction in predictions:
        relative = os.path.relpath(prediction.path, setup['image_dir'])
        png = Image.open(os.path.join(save_dir, 'pseudo_color_prediction', os.path.splitext(relative)[0] + '.png'))
        np.testing.assert_array_equal(prediction.label_map, np.array(png))
        added = cv2.imread(os.path.join(save_dir, 'added_prediction', relative))
        np.testing.assert_array_equal(prediction.overlay(), added)
    output = str(tmp_path / 'metrics.json')
    evaluate.main(common + ['--output', output] + cli_flags(case, 'val'))
    with open(output) as file:
        expected = json.load(file)
    got = json.loads(json.dumps(metrics_json(seg.evaluate())))
    assert got == expected
    labels = [np.array(Image.open(p.replace('leftImg8bit', 'gtFine').replace('.png', '_labelTrainIds.png')))
              for p in setup['images']]
    assert got['num_images'] == 4 and sum(map(sum, got['confusion'])) == sum(int((x != 255).sum()) for x in labels)


def test_fast_path_warm_start_equals_the_command(setup, tmp_path, monkeypatch):
    """The default (fast) Segmenter starts from the export the command made, and predicts what it wrote."""
    monkeypatch.setenv('PADDLE_PSP_CACHE', str(tmp_path / 'cache'))
    save_dir = str(tmp_path / 'out')
    path = setup['images'][0]
    assert predict.main(['--config', setup['config'], '--model_path', setup['checkpoint'], '--image_path', path,
                         '--save_dir', save_dir]) == 0
    entries = sorted(os.listdir(tmp_path / 'cache'))
    seg = paddle_psp.Segmenter(setup['checkpoint'], setup['config'], cpu_tuning=False)
    assert sorted(os.listdir(tmp_path / 'cache')) == entries  # nothing exported again
    png = np.array(Image.open(os.path.join(save_dir, 'pseudo_color_prediction', os.path.basename(path))))
    np.testing.assert_array_equal(seg.predict(path).label_map, png)


def test_predict_accepts_paths_arrays_lists_and_sizes(setup, tmp_path):
    seg, path = setup['seg'], setup['images'][0]
    one = seg.predict(path, scores=True)
    assert isinstance(one, paddle_psp.Prediction) and one.path == path
    assert one.label_map.shape == (64, 128) and one.label_map.dtype == np.int32
    assert one.scores.shape == (19, 64, 128)
    np.testing.assert_array_equal(one.scores.argmax(axis=0), one.label_map)
    bgr = cv2.imread(path)
    np.testing.assert_array_equal(seg.predict(bgr).label_map, one.label_map)
    np.testing.assert_array_equal(seg(bgr[:, :, ::-1].copy(), rgb=True).label_map, one.label_map)
    np.testing.assert_array_equal(seg.predict(Image.open(path).convert('RGB')).label_map, one.label_map)
    small = cv2.resize(bgr, (96, 40))
    both = seg.predict([path, small])
    assert isinstance(both, list) and [p.label_map.shape for p in both] == [(64, 128), (40, 96)]
    assert both[0].scores is None and both[1].path is None
    np.testing.assert_array_equal(both[0].label_map, one.label_map)
    lazily = seg.iter_predict([small, path])
    np.testing.assert_array_equal(next(lazily).label_map, both[1].label_map)
    np.testing.assert_array_equal(next(lazily).label_map, one.label_map)
    with pytest.raises(UserError, match='empty list'):
        seg.iter_predict([])  # checked at the call, not at the first next()
    listing = tmp_path / 'list.txt'
    listing.write_text(path + '\n')
    assert len(seg.predict(str(listing))) == 1


def test_prediction_helpers(setup, tmp_path):
    seg = setup['seg']
    prediction = seg.predict(setup['images'][1])
    assert seg.classes[0] == 'road' and len(seg.classes) == 19 and seg.palette.shape == (256, 3)
    colour = prediction.color_map()
    assert colour.mode == 'P'
    np.testing.assert_array_equal(np.array(colour), prediction.label_map)
    np.testing.assert_array_equal(np.array(colour.convert('RGB')), seg.palette[prediction.label_map])
    fractions = prediction.class_fractions()
    assert abs(sum(fractions.values()) - 1) < 1e-9 and list(fractions.values()) == sorted(fractions.values())[::-1]
    written = seg.save_predictions(setup['images'][1], str(tmp_path))
    np.testing.assert_array_equal(np.array(Image.open(written[0])), prediction.label_map)


@pytest.mark.parametrize('images, message', [
    ([], r'images: an empty list; expected an image file path'),
    (np.zeros((8, 8), np.uint8), r'images: an array of shape \[8, 8\]; expected \(H, W, 3\) colour \(grey'),
    (np.zeros((8, 8, 4), np.uint8), r'shape \[8, 8, 4\]; expected \(H, W, 3\) colour \(with alpha'),
    (np.zeros((8, 8, 3), np.float32), r'dtype float32; expected uint8'),
    ([np.zeros((8, 8, 3), np.uint8), 3], r'images\[1\]: a int; expected'),
    ('missing.png', r'images missing.png: no such file or folder'),
    (Image.new('RGBA', (8, 8)), r'images: a PIL image of mode RGBA; expected mode RGB'),
])
def test_bad_images_raise_one_clear_error(setup, images, message):
    with pytest.raises(UserError, match=message):
        setup['seg'].predict(images)


@pytest.mark.parametrize('args, kwargs, message', [
    (('no_such_model',), {}, r"model_path 'no_such_model' is not a zoo name; expected the config"),
    (('x.pdparams', 'no_such_config'), {}, r'no_such_config'),
    (('x.pdparams', None), {'flip': True}, r"unknown option 'flip'; expected one of"),
    (('x.pdparams', None), {'device': 'tpu'}, r"device: 'tpu'; expected one of cpu, gpu"),
])
def test_bad_arguments_raise_one_clear_error(args, kwargs, message):
    with pytest.raises(UserError, match=message):
        paddle_psp.Segmenter(*args, cpu_tuning=False, **kwargs)


@pytest.mark.parametrize('kwargs, message', [
    ({'quantize': 'int4'}, r'quantize int4: expected one of none, int8'),
    ({'scales': (0.5, 0)}, r'scales: \(0.5, 0\); expected one or more numbers > 0'),
    ({'is_slide': True, 'crop_size': (64, 64)}, r'is_slide: needs --crop_size W H and --stride W H'),
])
def test_bad_options_raise_one_clear_error(setup, kwargs, message):
    with pytest.raises(UserError, match=message):
        paddle_psp.Segmenter(setup['checkpoint'], setup['config'], fast=False, cpu_tuning=False, **kwargs)


def test_unknown_checkpoint_is_named(setup, tmp_path):
    with pytest.raises(UserError, match='missing.pdparams'):
        paddle_psp.Segmenter(str(tmp_path / 'missing.pdparams'), setup['config'], fast=False, cpu_tuning=False)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_url_is_downloaded_into_the_cache(setup, tmp_path, monkeypatch):
    """A URL (served on 127.0.0.1) as model_path: downloaded once into the download cache, same predictions."""
    monkeypatch.setenv('SEG_HOME', str(tmp_path / 'home'))
    handler = functools.partial(QuietHandler, directory=os.path.dirname(setup['checkpoint']))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f'http://127.0.0.1:{server.server_port}/{os.path.basename(setup["checkpoint"])}'
        seg = paddle_psp.Segmenter(url, setup['config'], fast=False, cpu_tuning=False)
    finally:
        server.shutdown()
        server.server_close()
    assert any(name.endswith('.pdparams') for _, _, names in os.walk(tmp_path / 'home') for name in names)
    path = setup['images'][2]
    np.testing.assert_array_equal(seg.predict(path).label_map, setup['seg'].predict(path).label_map)
