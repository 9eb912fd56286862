"""Configs written as PaddleSeg 2.8's repository writes them (``type: PSPNet``, ``ResNet50_vd``,
``CrossEntropyLoss``, its ``_base_`` chain, a backbone ``pretrained`` URL) run unchanged on Paddle 3.

The upstream-style files are written here from the hyperparameters in tests/data/upstream_configs.json.
"""
import json
import os

import numpy as np
import paddle
import pytest
import yaml
from paddleseg.cvlibs import manager
from paddleseg.models.losses import CrossEntropyLoss

from paddle_psp.config import load_config
from paddle_psp.config.upstream import substitute_upstream
from paddle_psp.engine import checkpoint as ckpt
from paddle_psp.evaluation import evaluate
from paddle_psp.models.losses import ZooCrossEntropyLoss
import paddle_psp_cli as cli

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(REPO_ROOT, 'tests', 'data', 'upstream_configs.json')) as _file:
    UPSTREAM = json.load(_file)['configs']
# Upstream's _base_/cityscapes.yml keys (the schedule and loss); the rest is in the crop-size file it inherits.
SCHEDULE_KEYS = ('batch_size', 'iters', 'optimizer', 'lr_scheduler', 'loss')
HEADS = {'PSPNet': ['model.pp_out_channels=32', 'model.bin_sizes=[1,2]'],
         'DeepLabV3': ['model.aspp_out_channels=32', 'model.aspp_ratios=[1,2]']}


def write_upstream_layout(directory, name):
    """Upstream config ``name`` as PaddleSeg writes it: ``configs/<model>/<name>.yml`` with
    ``_base_: '../_base_/cityscapes.yml'``, which inherits ``./cityscapes_1024x512.yml`` (datasets)."""
    resolved = UPSTREAM[name]
    base_dir, leaf_dir = os.path.join(directory, '_base_'), os.path.join(directory, resolved['model']['type'])
    os.makedirs(base_dir, exist_ok=True)
    os.makedirs(leaf_dir, exist_ok=True)
    datasets = {key: resolved[key] for key in ('train_dataset', 'val_dataset')}
    schedule = dict({key: resolved[key] for key in SCHEDULE_KEYS}, _base_='./cityscapes_1024x512.yml')
    schedule['loss'] = {'types': [{'type': 'CrossEntropyLoss'}], 'coef': [1]}
    leaf = {'_base_': '../_base_/cityscapes.yml', 'model': resolved['model'],
            'lr_scheduler': {'end_lr': resolved['lr_scheduler']['end_lr']}, 'loss': resolved['loss']}
    for path, dic in ((os.path.join(base_dir, 'cityscapes_1024x512.yml'), datasets),
                      (os.path.join(base_dir, 'cityscapes.yml'), schedule),
                      (os.path.join(leaf_dir, name + '.yml'), leaf)):
        with open(path, 'w') as file:
            yaml.safe_dump(dic, file, sort_keys=False)
    return os.path.join(leaf_dir, name + '.yml')


def shrink(model_type, data_root, iters):
    """``--opts`` that make a Cityscapes config train in seconds on the tiny dataset."""
    return ['model.backbone.pretrained=None', f'train_dataset.dataset_root={data_root}',
            f'val_dataset.dataset_root={data_root}', 'train_dataset.transforms.1.crop_size=[64,64]',
            f'iters={iters}'] + HEADS[model_type]


# ------------------------------------------------------------------------- PaddleSeg built-ins on Paddle 3
def test_paddleseg_cross_entropy_fails_on_paddle3_and_the_registry_keeps_it():
    logit, label = paddle.rand([1, 3, 4, 4]), paddle.zeros([1, 4, 4], dtype='int64')
    with pytest.raises(TypeError, match='promotion'):
        CrossEntropyLoss()(logit, label)
    assert manager.LOSSES['CrossEntropyLoss'] is CrossEntropyLoss
    dic = {'loss': {'types': [{'type': 'CrossEntropyLoss'}], 'coef': [1]}}
    assert substitute_upstream(dic, 'x.yml') == ['loss.types.0 CrossEntropyLoss -> ZooCrossEntropyLoss']
    assert dic['loss']['types'] == [{'type': 'ZooCrossEntropyLoss'}]


def reference_cross_entropy(logit, label, weight=None, ignore_index=255, top_k=1.0, avg_non_ignore=True,
                            semantic_weights=None):
    """PaddleSeg 2.8's CrossEntropyLoss as it computes on Paddle 2 (NHWC logits, numpy)."""
    shifted = logit - logit.max(-1, keepdims=True)
    log_prob = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    valid = label != ignore_index
    safe = np.where(valid, label, 0)
    class_weight = np.ones(label.shape) if weight is None else np.asarray(weight)[safe]
    loss = -np.take_along_axis(log_prob, safe[..., None], -1)[..., 0] * class_weight * valid
    mask = valid if avg_non_ignore else np.ones(label.shape)
    loss = loss * mask * (1 if semantic_weights is None else semantic_weights)
    coef = class_weight if weight is not None else np.ones(label.shape)
    if top_k == 1.0:
        return loss.mean() / ((mask * coef).mean() + 1e-8)
    order = np.argsort(-loss.ravel(), kind='stable')[:int(top_k * loss.size)]
    return loss.ravel()[order].mean() / (coef.ravel()[order].mean() + 1e-8)


LOSS_CASES = {
    'defaults': {},
    'weight': {'weight': [0.5, 1.0, 2.0, 1.5]},
    'top_k': {'top_k_percent_pixels': 0.3},
    'top_k weight': {'top_k_percent_pixels': 0.5, 'weight': [0.5, 1.0, 2.0, 1.5]},
    'all pixels': {'avg_non_ignore': False},
    'ignore 0': {'ignore_index': 0},
    'nhwc': {'data_format': 'NHWC'},
    'semantic weights': {'semantic': True, 'weight': [0.5, 1.0, 2.0, 1.5]},
}


@pytest.mark.parametrize('case', sorted(LOSS_CASES))
def test_cross_entropy_has_paddleseg_semantics(case):
    options = dict(LOSS_CASES[case])
    semantic = options.pop('semantic', False)
    rng = np.random.default_rng(0)
    logit = rng.normal(0, 2, (2, 4, 5, 6)).astype('float32')
    label = rng.integers(0, 4, (2, 5, 6))
    label[:, 0] = options.get('ignore_index', 255)
    pixel_weights = rng.uniform(0.5, 2, label.shape).astype('float32') if semantic else None
    nhwc = logit.transpose(0, 2, 3, 1)
    loss_layer = ZooCrossEntropyLoss(**options)
    got = loss_layer(paddle.to_tensor(nhwc if options.get('data_format') == 'NHWC' else logit),
                     paddle.to_tensor(label), None if pixel_weights is None else paddle.to_tensor(pixel_weights))
    expected = reference_cross_entropy(nhwc, label, options.get('weight'), options.get('ignore_index', 255),
                                       options.get('top_k_percent_pixels', 1.0),
                                       options.get('avg_non_ignore', True), pixel_weights)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    if list(options) == ['top_k_percent_pixels']:  # the one case PaddleSeg's own runs on Paddle 3
        assert float(got) == pytest.approx(float(CrossEntropyLoss(**options)(
            paddle.to_tensor(logit), paddle.to_tensor(label))), rel=1e-6)


def test_cross_entropy_refuses_a_weight_per_class_mismatch():
    with pytest.raises(ValueError, match='3 class weights but the logits have 4 classes'):
        ZooCrossEntropyLoss(weight=[1, 1, 1])(paddle.rand([1, 4, 2, 2]), paddle.zeros([1, 2, 2], dtype='int64'))


# ----------------------------------------------------------------------------------------- substitution
@pytest.mark.parametrize('name', sorted(UPSTREAM))
def test_every_upstream_config_gets_our_components(name, tmp_path):
    cfg = load_config(write_upstream_layout(str(tmp_path), name))
    model = UPSTREAM[name]['model']
    backbone = model['backbone']['type']
    assert cfg.dic['model']['type'] == 'Zoo' + model['type']
    assert cfg.dic['model']['backbone']['type'] == 'Zoo' + backbone
    assert {item['type'] for item in cfg.dic['loss']['types']} == {'ZooCrossEntropyLoss'}
    assert cfg.dic['model']['backbone']['pretrained'] == model['backbone']['pretrained']
    if model['type'] == 'DeepLabV3':
        assert cfg.dic['model']['aspp_ratios'] == model['aspp_ratios']
    assert len(cfg.substitutions) == 2 + len(UPSTREAM[name]['loss']['types'])


def test_substitution_rules():
    model = {'type': 'DeepLabV3', 'backbone': {'type': 'ResNet50_vd', 'data_format': 'NCHW'}}
    dic = {'model': model, 'loss': {'types': [{'type': 'MixedLoss', 'losses': [{'type': 'CrossEntropyLoss'}],
                                               'coef': [1]}], 'coef': [1]}}
    assert substitute_upstream(dic, 'x.yml') == ['model DeepLabV3 -> ZooDeepLabV3',
                                                 'model.backbone ResNet50_vd -> ZooResNet50_vd',
                                                 'loss.types.0.losses.0 CrossEntropyLoss -> ZooCrossEntropyLoss']
    assert model == {'type': 'ZooDeepLabV3', 'backbone': {'type': 'ZooResNet50_vd'},
                     'aspp_ratios': [1, 6, 12, 18]}  # PaddleSeg's default, not ours
    # PaddleSeg's classes stay where ours would compute something else.
    for kept in ({'type': 'PSPNet', 'backbone': {'type': 'ResNet50_vd', 'data_format': 'NHWC'}},
                 {'type': 'PSPNet', 'backbone': {'type': 'HRNet_W18'}},
                 {'type': 'FCN', 'backbone': {'type': 'ResNet50_vd'}}):
        before = json.loads(json.dumps(kept))
        assert substitute_upstream({'model': kept}, 'x.yml') == [] and kept == before
    mixed = {'type': 'ZooPSPNet', 'backbone': {'type': 'ResNet101_vd'}}
    assert substitute_upstream({'model': mixed}, 'x.yml') == ['model.backbone ResNet101_vd -> ZooResNet101_vd']


# ---------------------------------------------------------------- same training and evaluation as ours
@pytest.mark.parametrize('upstream_name, zoo_folder', [
    ('pspnet_resnet50_os8_cityscapes_1024x512_80k', 'cityscapes'),
    ('deeplabv3_resnet50_os8_cityscapes_1024x512_80k', 'cityscapes')])
def test_upstream_config_trains_and_evaluates_as_the_zoo_config(upstream_name, zoo_folder, tmp_path,
                                                               synthetic_root, capsys):
    iters = 3
    configs = {'upstream': write_upstream_layout(str(tmp_path / 'configs'), upstream_name),
               'zoo': os.path.join(REPO_ROOT, 'configs', zoo_folder, upstream_name + '.yml')}
    opts = shrink(UPSTREAM[upstream_name]['model']['type'], synthetic_root, iters)
    results = {}
    for kind, config in configs.items():
        save_dir = str(tmp_path / kind)
        capsys.readouterr()
        assert cli.main(['train', '--config', config, '--save_dir', save_dir, '--save_interval', str(iters),
                         '--seed', '7', '--opts'] + opts) == 0
        replaced = [line for line in capsys.readouterr().err.splitlines() if 'PaddleSeg built-ins replaced' in line]
        checkpoint = os.path.join(save_dir, f'iter_{iters}')
        scores = evaluate.main(['--config', config, '--model_path', checkpoint, '--opts'] + opts)
        results[kind] = {'replaced': replaced, 'losses': ckpt.read_info(checkpoint)['losses'],
                         'keys': list(paddle.load(os.path.join(checkpoint, 'model.pdparams'))),
                         'confusion': scores['confusion']}
    upstream, zoo = results['upstream'], results['zoo']
    assert len(upstream['replaced']) == 1 and 'CrossEntropyLoss -> ZooCrossEntropyLoss' in upstream['replaced'][0]
    assert zoo['replaced'] == []
    assert upstream['keys'] == zoo['keys']
    assert sorted(upstream['losses']) == sorted(zoo['losses']) == [str(i) for i in range(1, iters + 1)]
    for iteration in upstream['losses']:
        np.testing.assert_allclose(upstream['losses'][iteration], zoo['losses'][iteration], rtol=1e-5)
    np.testing.assert_array_equal(upstream['confusion'], zoo['confusion'])
