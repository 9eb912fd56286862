"""`paddleseg predict` (coloured PNGs) and `paddleseg export` (Paddle Inference model + deploy.yaml)."""
import os
import shutil

import cv2
import numpy as np
import paddle
import pytest
import yaml
from PIL import Image

from conftest import write_checkpoints
from paddle_psp.data import datasets
import paddle_psp_cli as cli
from paddle_psp.inference import cache, entry, export, predict, quantize, runner
from paddle_psp.inference.forward import model_forward
from paddle_psp.inference import tta
from paddle_psp.config import load_config
from paddle_psp.core.errors import UserError
from tolerances import assert_classes_differ_only_at_ties, assert_same_forward

NUM_CLASSES = 19


@pytest.fixture(scope='module')
def setup(synthetic_root, tmp_path_factory):
    """A tiny PSPNet config and random checkpoint, the dygraph model, and a DeepLabV3 checkpoint."""
    paths = write_checkpoints(tmp_path_factory.mktemp('predict_export'), synthetic_root, seed=5)
    model = load_config(paths['config']).model
    model.set_state_dict(paddle.load(paths['checkpoint']))
    model.eval()
    image_dir = os.path.join(synthetic_root, 'leftImg8bit', 'val')
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('MKL_DEBUG_CPU_TYPE', os.environ.get('MKL_DEBUG_CPU_TYPE', '5'))  # faster export child
        yield dict(paths, model=model, image_dir=image_dir, images=sorted(
            os.path.join(r, f) for r, _, fs in os.walk(image_dir) for f in fs))


def normalized(path):
    rgb = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB).astype(np.float32)
    return ((rgb / 255 - 0.5) / 0.5).transpose(2, 0, 1)[np.newaxis]


def dygraph_logits(model, path):
    with paddle.no_grad():
        return model(paddle.to_tensor(normalized(path)))[0].numpy()


def test_predict_folder_writes_palette_pngs_and_overlays(setup, tmp_path):
    save_dir = str(tmp_path / 'out')
    assert predict.main(['--config', setup['config'], '--model_path', setup['checkpoint'],
                         '--image_path', setup['image_dir'], '--save_dir', save_dir, '--dygraph']) == 0
    palette = datasets.palette('Cityscapes')
    for path in setup['images']:
        relative = os.path.relpath(path, setup['image_dir'])  # synthcity/<name>.png: sub-folders kept
        stem = os.path.splitext(relative)[0]
        colour = Image.open(os.path.join(save_dir, 'pseudo_color_prediction', stem + '.png'))
        assert colour.mode == 'P'
        assert np.array(colour.getpalette()[:57]).reshape(19, 3).tolist() == palette[:19].tolist()
        expected = dygraph_logits(setup['model'], path)[0].argmax(axis=0)
        np.testing.assert_array_equal(np.array(colour), expected)
        added = cv2.imread(os.path.join(save_dir, 'added_prediction', relative))
        blend = 0.6 * cv2.imread(path).astype(np.float32) + 0.4 * palette[expected][:, :, ::-1]
        assert np.abs(added.astype(np.float32) - blend).max() <= 1.0
    log = open(os.path.join(save_dir, 'predict.log'), encoding='utf-8').read()
    assert f'predicting: {len(setup["images"])}/{len(setup["images"])} images' in log and 'saved in' in log


def test_predict_list_file_single_file_and_tta(setup, tmp_path):
    list_file = tmp_path / 'images.txt'
    list_file.write_text(''.join(os.path.relpath(p, tmp_path) + ' ignored_label.png\n'
                                 for p in setup['images'][:2]))
    images, base = predict.list_images(str(list_file))
    assert images == [os.path.join(str(tmp_path), os.path.relpath(p, tmp_path)) for p in setup['images'][:2]]
    save_dir = str(tmp_path / 'out')
    path = setup['images'][0]
    assert predict.main(['--config', setup['config'], '--model_path', setup['checkpoint'], '--image_path', path,
                         '--save_dir', save_dir, '--aug_pred', '--scales', '0.75', '1.0',
                         '--flip_horizontal', '--dygraph']) == 0
    got = np.array(Image.open(os.path.join(save_dir, 'pseudo_color_prediction',
                                           os.path.basename(path))))
    options = tta.InferOptions.create(aug=True, scales=(0.75, 1.0), flip_horizontal=True)
    expected = tta.infer_labels(tta.layer_forward(setup['model']), normalized(path)[0], None, options)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize('make_path, message', [
    (lambda tmp: str(tmp), 'no images found'),  # an empty folder
    (lambda tmp: str(tmp / 'missing.png'), 'no such file or folder'),
])
def test_image_path_without_images_is_a_user_error(setup, tmp_path, make_path, message):
    with pytest.raises(UserError, match=message) as err:
        predict.main(['--config', setup['config'], '--model_path', setup['checkpoint'],
                      '--image_path', make_path(tmp_path), '--save_dir', str(tmp_path / 'out')])
    assert str(err.value).startswith('--image_path ')


def test_output_ops_in_dygraph(setup):
    x = paddle.to_tensor(normalized(setup['images'][0]))
    logits = setup['model'](x)[0].numpy()
    with paddle.no_grad():
        labels = export.OutputOp(setup['model'], 'argmax')(x).numpy()
        probabilities = export.OutputOp(setup['model'], 'softmax')(x).numpy()
        raw = export.OutputOp(setup['model'], 'none')(x).numpy()
    assert labels.dtype == np.int32 and labels.shape == (1, 64, 128)
    np.testing.assert_array_equal(labels, logits.argmax(axis=1))
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probabilities, shifted / shifted.sum(axis=1, keepdims=True), atol=1e-6)
    np.testing.assert_array_equal(raw, logits)


def run_paddle_inference(model_dir, batch):
    """Run the exported model with the plain paddle.inference API, oneDNN on."""
    from paddle import inference
    config = inference.Config(os.path.join(model_dir, 'model.pdmodel'),
                              os.path.join(model_dir, 'model.pdiparams'))
    config.disable_gpu()
    config.enable_mkldnn()
    predictor = inference.create_predictor(config)
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(batch.shape)
    handle.copy_from_cpu(batch)
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def test_export_argmax_matches_dygraph(setup, tmp_path):
    save_dir = str(tmp_path / 'inference')
    assert export.main(['--config', setup['config'], '--model_path', setup['checkpoint'],
                        '--save_dir', save_dir, '--output_op', 'argmax']) == 0
    assert sorted(f for f in os.listdir(save_dir)) == ['deploy.yaml', 'model.pdiparams', 'model.pdmodel']
    deploy = yaml.safe_load(open(os.path.join(save_dir, 'deploy.yaml')))['Deploy']
    assert deploy == {'model': 'model.pdmodel', 'params': 'model.pdiparams',
                      'transforms': [{'type': 'Normalize'}], 'input_shape': [None, 3, None, None],
                      'output_op': 'argmax', 'output_dtype': 'int32'}
    from paddleseg.deploy.infer import DeployConfig  # PaddleSeg's own reader accepts the file
    assert os.path.isfile(DeployConfig(os.path.join(save_dir, 'deploy.yaml')).model)
    batch = np.concatenate([normalized(p) for p in setup['images'][:2]])
    got = run_paddle_inference(save_dir, batch)
    assert got.dtype == np.int32 and got.shape == (2, 64, 128)
    expected = np.concatenate([dygraph_logits(setup['model'], p) for p in setup['images'][:2]])
    assert_classes_differ_only_at_ties(got, expected)   # oneDNN against Paddle's kernels: tests/tolerances.py


def test_export_logits_with_fixed_shape_replace_the_dygraph_model(setup, tmp_path):
    save_dir = str(tmp_path / 'logits')
    export.export(setup['config'], setup['checkpoint'], save_dir, input_shape=[1, 3, 64, 128], output_op='none')
    deploy = yaml.safe_load(open(os.path.join(save_dir, 'deploy.yaml')))['Deploy']
    assert deploy['input_shape'] == [1, 3, 64, 128] and deploy['output_dtype'] == 'float32'
    forward = runner.inference_forward(save_dir)
    for path in setup['images'][:2]:
        assert_same_forward(forward(normalized(path)), dygraph_logits(setup['model'], path))
    dataset = load_config(setup['config']).val_dataset
    from paddle_psp.evaluation.evaluate import evaluate
    fast = evaluate(forward, dataset, print_detail=False)
    slow = evaluate(setup['model'], dataset, print_detail=False)
    assert np.abs(fast['confusion'] - slow['confusion']).sum() <= 0.002 * slow['confusion'].sum()


@pytest.mark.parametrize('argv, message', [
    (['--input_shape', '1', '4', '64', '64'], '--input_shape 1 4 64 64'),
    (['--input_shape', '1', '3', '0', '64'], '--input_shape 1 3 0 64'),
])
def test_export_bad_shape_is_a_user_error(setup, tmp_path, argv, message):
    with pytest.raises(UserError, match=message):
        export.main(['--config', setup['config'], '--model_path', setup['checkpoint'],
                     '--save_dir', str(tmp_path)] + argv)


def test_export_weights_of_another_model_is_a_user_error(setup, tmp_path):
    save_dir = tmp_path / 'never'
    with pytest.raises(UserError, match=r'weights of another model.*head\.psp_module\.') as err:
        export.main(['--config', setup['config'], '--model_path', setup['other_checkpoint'],
                     '--save_dir', str(save_dir)])
    assert '\n' not in str(err.value)
    assert not save_dir.exists() or not any(save_dir.iterdir())


def test_bad_cache_size_is_one_error_line(setup, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cache.SIZE_VAR, '4 gigs')
    status = cli.main(['predict', '--config', setup['config'], '--model_path', setup['checkpoint'],
                       '--image_path', setup['images'][0], '--save_dir', str(tmp_path / 'out')])
    assert status == 2
    assert capsys.readouterr().err.splitlines() == [
        "paddleseg predict: error: PADDLE_PSP_CACHE_SIZE='4 gigs' is not a size; expected bytes or a number "
        "with K, M, G or T (powers of 1024), e.g. 4G"]
    assert not os.path.exists(tmp_path / 'out')


def test_export_int8_is_quantized_and_runs_on_int8_kernels(setup, tmp_path):
    save_dir = str(tmp_path / 'int8')
    assert export.main(['--config', setup['config'], '--model_path', setup['checkpoint'], '--save_dir', save_dir,
                        '--output_op', 'none', '--quantize', 'int8', '--calib_images', '2']) == 0
    assert yaml.safe_load(open(os.path.join(save_dir, 'deploy.yaml')))['Deploy']['quantize'] == 'int8'
    assert sorted(os.listdir(save_dir)) == ['deploy.yaml', 'model.pdiparams', 'model.pdmodel']
    with open(os.path.join(save_dir, 'model.pdmodel'), 'rb') as handle:
        assert b'fake_quantize' in handle.read()  # the calibrated quantization ops are in the program
    batch = np.concatenate([normalized(p) for p in setup['images'][:2]])
    expected = np.concatenate([dygraph_logits(setup['model'], p) for p in setup['images'][:2]])
    simulated = runner.inference_forward(save_dir, use_mkldnn=False)(batch)
    got = runner.inference_forward(save_dir, int8=True)(batch)
    assert got.shape == simulated.shape == expected.shape == (2, 19, 64, 128) and np.isfinite(got).all()
    # A random network amplifies the rounding (chance is 1/19; measured: 0.88 int8 kernels, 0.92 simulated).
    for output in (got, simulated):
        assert (output.argmax(1) == expected.argmax(1)).mean() >= 0.75


def test_model_forward_int8_is_a_cache_entry_of_its_own(setup, tmp_path):
    cfg = load_config(setup['config'])
    calibration = quantize.config_calibration(cfg, 'int8', 2)
    assert len(calibration) == 2 and quantize.config_calibration(cfg, 'none') is None
    cache_dir = str(tmp_path / 'cache')
    batch = normalized(setup['images'][0])
    fp32 = model_forward(setup['model'], cache_dir=cache_dir)
    int8 = model_forward(setup['model'], cache_dir=cache_dir, calibration=calibration)
    assert int8.kind == fp32.kind == 'paddle-inference'
    entries = [name for name in os.listdir(cache_dir) if os.path.isdir(os.path.join(cache_dir, name))]
    assert len(entries) == 2, entries
    got, expected = int8(batch), fp32(batch)
    assert got.shape == expected.shape and not np.allclose(got, expected)  # quantized, not the fp32 model
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.75
    # each entry holds the program of its graph passes (int8: the int8 passes), which computes what the
    # export computes with those passes run at load
    for name in entries:
        assert set(runner.OPTIMIZED_FILES) <= set(os.listdir(os.path.join(cache_dir, name)))
    plain, optimized = str(tmp_path / 'plain_int8'), str(tmp_path / 'optimized_int8')
    export.save_static_model(entry.inference_copy(setup['model']), plain, [None, 3, None, None], 'none',
                             calibration)
    shutil.copytree(plain, optimized)
    entry.save_optimized(optimized, int8=True)
    assert set(os.listdir(optimized)) == set(runner.OPTIMIZED_FILES)
    at_load, saved = (runner.inference_forward(folder, int8=True) for folder in (plain, optimized))
    for batch in (batch, np.concatenate([normalized(p)[..., :96] for p in setup['images'][:2]])):
        np.testing.assert_array_equal(saved(batch), at_load(batch))
