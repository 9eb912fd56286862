"""`paddleseg val` and evaluate(): numbers against an independent computation on the generated dataset."""
import io
import logging
import multiprocessing
import os
import re

import cv2
import numpy as np
import paddle
import pytest
from paddleseg.datasets import Dataset
from paddleseg.transforms import Normalize, Padding
from PIL import Image

from conftest import write_checkpoints
import paddle_psp_cli as cli
from paddle_psp.data.synthetic import CLASSES
from paddle_psp.evaluation import evaluate
from paddle_psp.inference import tta as infer
from paddle_psp.config import load_config
from paddle_psp.data.datasets import CITYSCAPES_CLASSES
from paddle_psp.core.errors import UserError
from test_metrics import reference_scores

NUM_CLASSES = 19


def colour_forward(batch):
    """A 'model' that scores each pixel by its distance to the generated dataset's class colours,
    plus a ramp across the width of its input (so padding, flips and windows change the result)."""
    rgb = (batch * 0.5 + 0.5) * 255  # undo Normalize
    logits = np.full((batch.shape[0], NUM_CLASSES) + batch.shape[2:], -1e4, np.float32)
    for class_id, (_, colour) in CLASSES.items():
        logits[:, class_id] = -((rgb - np.array(colour)[None, :, None, None]) ** 2).sum(axis=1) / 2000
    logits[:, 2] += np.linspace(-3, 3, batch.shape[3])[None, None, :]
    return logits


def val_files(root):
    """(image, label) paths of the generated val split, as the Cityscapes dataset lists them."""
    image_dir = os.path.join(root, 'leftImg8bit', 'val', 'synthcity')
    names = sorted(os.listdir(image_dir))
    return [(os.path.join(image_dir, n), os.path.join(root, 'gtFine', 'val', 'synthcity',
                                                      n.replace('leftImg8bit', 'gtFine_labelTrainIds')))
            for n in names]


def normalized(path):
    rgb = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB).astype(np.float32)
    return ((rgb / 255 - 0.5) / 0.5).transpose(2, 0, 1)


@pytest.fixture(scope='module')
def setup(synthetic_root, tmp_path_factory):
    """A tiny PSPNet config, its random checkpoint and a DeepLabV3 checkpoint (another model)."""
    paths = write_checkpoints(tmp_path_factory.mktemp('evaluate'), synthetic_root, seed=1)
    return dict(paths, root=synthetic_root)


@pytest.fixture
def log_lines():
    """Lines the package logger writes during the test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger('paddle_psp').addHandler(handler)
    yield lambda: stream.getvalue().splitlines()
    logging.getLogger('paddle_psp').removeHandler(handler)


def test_evaluate_matches_independent_reference(setup):
    dataset = load_config(setup['config']).val_dataset
    got = evaluate.evaluate(colour_forward, dataset, print_detail=False)
    preds, labels = [], []
    for image_path, label_path in val_files(setup['root']):
        preds.append(colour_forward(normalized(image_path)[np.newaxis])[0].argmax(axis=0))
        labels.append(np.asarray(Image.open(label_path)))
    expected = reference_scores(preds, labels, NUM_CLASSES)
    for key in ('mIoU', 'Acc', 'Kappa', 'Dice'):
        assert got[key] == pytest.approx(expected[key], rel=1e-9), key
    for key in ('class_IoU', 'class_precision', 'class_recall'):
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-9, equal_nan=True, err_msg=key)
    assert got['confusion'].shape == (NUM_CLASSES, NUM_CLASSES)
    assert got['confusion'].sum() == sum((label != 255).sum() for label in labels)
    assert got['class_names'] == list(CITYSCAPES_CLASSES) and got['num_images'] == 4
    assert 0.2 < got['mIoU'] < 0.99  # informative: neither perfect nor hopeless


def test_padding_is_cropped_off_before_scoring(setup, tmp_path):
    """VOC-style val: Padding to a larger size, then Normalize; logits are cropped back to the image."""
    root = setup['root']
    list_file = tmp_path / 'val.txt'
    list_file.write_text(''.join(f'{os.path.relpath(i, root)} {os.path.relpath(l, root)}\n'
                                 for i, l in val_files(root)))
    dataset = Dataset(mode='val', dataset_root=root, num_classes=NUM_CLASSES, val_path=str(list_file),
                      transforms=[Padding(target_size=(160, 96)), Normalize()])
    got = evaluate.evaluate(colour_forward, dataset, print_detail=False)
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    unpadded = np.zeros_like(confusion)
    for image_path, label_path in val_files(root):
        image = normalized(image_path)
        padded = np.zeros((3, 96, 160), np.float32)  # Padding's 127.5 is 0 after Normalize
        padded[:, :64, :128] = image
        pred = colour_forward(padded[np.newaxis])[0, :, :64, :128].argmax(axis=0)
        label = np.asarray(Image.open(label_path)).astype(np.int64)
        for p, l in zip(pred.ravel(), label.ravel()):
            if l != 255:
                confusion[l, p] += 1
        plain = colour_forward(image[np.newaxis])[0].argmax(axis=0)
        unpadded += np.array([[np.sum((label == a) & (plain == b)) for b in range(NUM_CLASSES)]
                              for a in range(NUM_CLASSES)])
    np.testing.assert_array_equal(got['confusion'], confusion)
    assert not np.array_equal(confusion, unpadded)  # the padding matters for this forward
    assert got['class_names'] == [str(i) for i in range(NUM_CLASSES)]  # unknown dataset type: indices


def test_tta_and_sliding_window_reach_the_inference(setup):
    dataset = load_config(setup['config']).val_dataset
    kwargs = dict(aug_eval=True, scales=(0.75, 1.0), flip_horizontal=True, is_slide=True, crop_size=(64, 64),
                  stride=(48, 48))
    seen = []

    def forward(batch):
        seen.append(batch.shape)
        return colour_forward(batch)
    got = evaluate.evaluate(forward, dataset, print_detail=False, **kwargs)
    options = infer.InferOptions.create(aug=True, scales=(0.75, 1.0), flip_horizontal=True, is_slide=True,
                                        crop_size=(64, 64), stride=(48, 48))
    expected = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for index in range(len(dataset)):
        sample = dataset[index]
        pred = infer.infer_labels(colour_forward, sample['img'], sample['trans_info'], options)
        label = sample['label'].ravel().astype(np.int64)
        keep = label != 255
        np.add.at(expected, (label[keep], pred.ravel()[keep]), 1)
    np.testing.assert_array_equal(got['confusion'], expected)
    plain = evaluate.evaluate(colour_forward, dataset, print_detail=False)
    assert not np.array_equal(plain['confusion'], got['confusion'])
    assert {shape[0] for shape in seen} == {2}  # the two flips of each window run as one batch
    assert len(seen) == 4 * (2 * 1 + 3 * 1)  # per image: 0.75 -> 48x96: 2 windows, 1.0 -> 64x128: 3


def test_layer_model_workers_and_training_mode(setup):
    dataset = load_config(setup['config']).val_dataset
    paddle.seed(2)
    layer = paddle.nn.Conv2D(3, NUM_CLASSES, 3, padding=1)
    layer.train()
    serial = evaluate.evaluate(layer, dataset, print_detail=False)
    assert layer.training  # evaluation during training must not leave the model in eval mode
    parallel = evaluate.evaluate(layer, dataset, num_workers=1, print_detail=False)
    np.testing.assert_array_equal(serial['confusion'], parallel['confusion'])
    assert serial['confusion'].sum() > 0


def test_workers_stop_when_scoring_stops_early(setup):
    """A forward that fails at the second image: the reading processes are gone when the error arrives (not
    left until interpreter exit, where they log errors)."""
    dataset = load_config(setup['config']).val_dataset
    calls = []

    def failing(batch):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError('stop here')
        return colour_forward(batch)
    assert not multiprocessing.active_children()
    with pytest.raises(RuntimeError, match='stop here'):
        evaluate.evaluate(failing, dataset, num_workers=1, print_detail=False)
    assert not multiprocessing.active_children()
    evaluate.evaluate(colour_forward, dataset, num_workers=1, print_detail=False)
    assert not multiprocessing.active_children()


def test_val_cli_prints_full_report(setup, log_lines):
    scores = evaluate.main(['--config', setup['config'], '--model_path', setup['checkpoint'], '--dygraph'])
    lines = log_lines()
    summary = [line for line in lines if 'mIoU:' in line]
    assert len(summary) == 1 and '#Images: 4' in summary[0] and 'Kappa:' in summary[0] and 'Dice:' in summary[0]
    progress = [line for line in lines if line.startswith('[EVAL] evaluating: ')]  # no terminal: lines with ETA
    assert progress and re.fullmatch(r'\[EVAL\] evaluating: 4/4 images, [\d.]+ s/image, ETA 00:00:00', progress[-1])
    for name in ('road', 'traffic light', 'bicycle'):
        assert any(line.split()[1:3][0] == name.split()[0] for line in lines if '[EVAL]' in line)
    # the printed mIoU matches the model run directly and scored by the reference
    model = load_config(setup['config']).model
    model.set_state_dict(paddle.load(setup['checkpoint']))
    model.eval()
    preds, labels = [], []
    with paddle.no_grad():
        for image_path, label_path in val_files(setup['root']):
            logits = model(paddle.to_tensor(normalized(image_path)[np.newaxis]))[0]
            preds.append(logits.numpy()[0].argmax(axis=0))
            labels.append(np.asarray(Image.open(label_path)))
    expected = reference_scores(preds, labels, NUM_CLASSES)
    assert f'mIoU: {expected["mIoU"]:.4f} Acc: {expected["Acc"]:.4f}' in summary[0]
    assert scores['mIoU'] == pytest.approx(expected['mIoU'], abs=1e-9)


def test_val_save_dir_holds_the_metrics_and_the_log_once_done(setup, tmp_path):
    save_dir = tmp_path / 'val'
    with pytest.raises(UserError):
        evaluate.main(['--config', setup['config'], '--model_path', str(tmp_path / 'missing.pdparams'),
                       '--save_dir', str(save_dir), '--dygraph'])
    assert not save_dir.exists()  # an error leaves no log behind
    scores = evaluate.main(['--config', setup['config'], '--model_path', setup['checkpoint'], '--dygraph',
                            '--save_dir', str(save_dir)])
    assert sorted(os.listdir(save_dir)) == ['metrics.json', 'val.log']
    log = (save_dir / 'val.log').read_text().splitlines()
    assert any(f'mIoU: {scores["mIoU"]:.4f}' in line for line in log)
    assert all(re.match(r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[[A-Z]+\] ', line) for line in log)


def test_val_cli_with_tta_and_sliding_window(setup, log_lines):
    argv = ['--config', setup['config'], '--model_path', setup['checkpoint'], '--aug_eval', '--scales', '0.75',
            '1.0', '--flip_horizontal', '--flip_vertical', '--is_slide', '--crop_size', '64', '64', '--stride',
            '48', '48', '--legacy_tta']
    assert 'mIoU' in evaluate.main(argv)
    lines = log_lines()
    assert any('legacy TTA scales 0.75,1 flips h+v (8 augmentations), sliding window 64x64 stride 48x48' in line
               for line in lines)
    assert sum('mIoU:' in line for line in lines) == 1


@pytest.mark.parametrize('extra, message', [
    (['--scales', '0', '1.0', '--aug_eval'], 'scales:'),
    (['--is_slide', '--crop_size', '64', '64', '--stride', '0', '32'], 'stride:'),
    (['--is_slide', '--crop_size', '64', '64', '--stride', '-8', '32'], 'stride:'),
])
def test_bad_options_are_user_errors(setup, extra, message):
    with pytest.raises(UserError, match=message):
        evaluate.main(['--config', setup['config'], '--model_path', setup['checkpoint']] + extra)


def test_missing_checkpoint_is_a_one_line_error(setup, tmp_path, capsys):
    missing = str(tmp_path / 'nope' / 'model.pdparams')
    assert cli.main(['val', '--config', setup['config'], '--model_path', missing]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('paddleseg val: error: ') and missing in err and '\n' not in err


def test_weights_of_another_model_name_the_first_mismatched_keys(setup):
    with pytest.raises(UserError, match=r'weights of another model.*head\.psp_module\.') as err:
        evaluate.main(['--config', setup['config'], '--model_path', setup['other_checkpoint']])
    assert '\n' not in str(err.value)


def test_val_uses_the_fast_cpu_path_by_default_with_the_same_predictions(setup, log_lines, tmp_path, monkeypatch):
    monkeypatch.setenv('PADDLE_PSP_CACHE', str(tmp_path / 'cache'))
    argv = ['--config', setup['config'], '--model_path', setup['checkpoint']]
    fast = evaluate.main(argv)
    assert any('fast forward: Paddle Inference with oneDNN' in line for line in log_lines())
    slow = evaluate.main(argv + ['--dygraph'])
    fast_matrix, slow_matrix = np.asarray(fast['confusion']), np.asarray(slow['confusion'])
    assert fast_matrix.sum() == slow_matrix.sum() > 0
    # same labels, so the diagonals differ by at most the pixels whose prediction changed
    assert np.abs(np.diag(fast_matrix) - np.diag(slow_matrix)).sum() <= 0.001 * slow_matrix.sum()
