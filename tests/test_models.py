"""Our models against PaddleSeg 2.8's own classes: same keys, same shapes, same outputs."""
import subprocess
import sys

import numpy as np
import paddle
import pytest
import yaml

import paddle_psp
from paddle_psp.data.synthetic import make_cityscapes_like
from paddle_psp.core.errors import UserError
from paddle_psp.models import ResNetVd, ZooDeepLabV3, ZooPSPNet, ZooResNet50_vd, ZooResNet101_vd, load_weights
from paddle_psp.models.pspnet import PyramidPooling
from paddle_psp.models.summary import count_parameters
from paddleseg.cvlibs import Config, SegBuilder, manager
from paddleseg.models import DeepLabV3, PSPNet
from paddleseg.models.backbones import ResNet18_vd, ResNet50_vd, ResNet101_vd
from tolerances import (RESNET50_FORWARD_RTOL, RESNET101_FORWARD_RTOL, assert_same_family, assert_same_forward,
                        forward_rtol)

PAIRS = {'ResNet50': (ZooResNet50_vd, ResNet50_vd), 'ResNet101': (ZooResNet101_vd, ResNet101_vd)}


def build_pair(model, depth, num_classes=19):
    ours_backbone, ref_backbone = PAIRS[depth]
    if model == 'PSPNet':
        return (ZooPSPNet(num_classes, ours_backbone(output_stride=8)),
                PSPNet(num_classes, ref_backbone(output_stride=8), enable_auxiliary_loss=True))
    grid = dict(output_stride=8, multi_grid=[1, 2, 4])
    return (ZooDeepLabV3(num_classes, ours_backbone(**grid)),
            DeepLabV3(num_classes, ref_backbone(**grid), backbone_indices=[3], aspp_ratios=[1, 12, 24, 36]))


def random_state(state, seed=0):
    """Random weights and BN statistics, so that equal outputs mean equal computation."""
    rng = np.random.RandomState(seed)
    out = {}
    for key, value in state.items():
        shape = list(value.shape)
        if key.endswith('_variance'):
            out[key] = rng.uniform(0.5, 1.5, shape).astype('float32')
        else:
            out[key] = (rng.standard_normal(shape) * 0.05).astype('float32')
    return out


@pytest.mark.parametrize('model', ['PSPNet', 'DeepLabV3'])
@pytest.mark.parametrize('depth', ['ResNet50', 'ResNet101'])
def test_same_keys_shapes_and_outputs_as_paddleseg(model, depth):
    paddle.seed(0)
    ours, ref = build_pair(model, depth)
    ours_state, ref_state = ours.state_dict(), ref.state_dict()
    assert list(ours_state) == list(ref_state)
    assert {k: list(v.shape) for k, v in ours_state.items()} == {k: list(v.shape) for k, v in ref_state.items()}
    expected_count = {('PSPNet', 'ResNet50'): 315, ('PSPNet', 'ResNet101'): 570,
                      ('DeepLabV3', 'ResNet50'): 312, ('DeepLabV3', 'ResNet101'): 567}[model, depth]
    assert len(ours_state) == expected_count
    weights = random_state(ref_state)
    ref.set_state_dict(weights)
    ours.set_state_dict(weights)
    ref.eval()
    ours.eval()
    image = paddle.to_tensor(np.random.RandomState(1).standard_normal([1, 3, 104, 120]).astype('float32'))
    with paddle.no_grad():
        expected = ref(image)[0].numpy()
        got = ours(image)
    assert len(got) == 1 and list(got[0].shape) == [1, 19, 104, 120]
    # the factored pyramid fusion sums in another order than PaddleSeg's concat: tests/tolerances.py
    assert_same_forward(got[0].numpy(), expected,
                        rtol=RESNET101_FORWARD_RTOL if depth == 'ResNet101' else RESNET50_FORWARD_RTOL)


# The pyramid module's reductions, forward: pooling, the 1x1 reduction, bilinear upsampling, the 3x3 fusion over
# 16 + 16 channels (the longest, 288 terms), the batch norms' statistics; backward the same again.
PYRAMID_FORWARD_RTOL = forward_rtol(5, 2 * 16 * 3 * 3)
PYRAMID_BACKWARD_RTOL = forward_rtol(2 * 5, 2 * 16 * 3 * 3)


@pytest.mark.parametrize('align_corners, dim_reduction, pooling, training', [
    (False, True, 'avg', True), (True, True, 'avg', False), (False, False, 'max', True),
    (True, False, 'max', False)])
def test_factored_pyramid_pooling_equals_concat_then_conv(align_corners, dim_reduction, pooling, training):
    """fusion='factored' against fusion='concat' (the paper's form): same state dict keys, outputs and
    gradients (input and every parameter), batch statistics or running ones."""
    paddle.seed(0)
    ours = PyramidPooling(16, 8, [1, 2, 3, 6], pooling, dim_reduction, align_corners)
    reference = PyramidPooling(16, 8, [1, 2, 3, 6], pooling, dim_reduction, align_corners, fusion='concat')
    assert ours.fusion == 'factored' and "fusion='factored'" in repr(ours)
    assert list(reference.state_dict()) == list(ours.state_dict())
    reference.set_state_dict(ours.state_dict())
    rng = np.random.default_rng(0)
    image = rng.standard_normal((2, 16, 13, 10)).astype('float32')  # odd, non-square, not bin multiples
    weights = paddle.to_tensor(rng.standard_normal((2, 8, 13, 10)).astype('float32'))
    results = []
    for module in (ours, reference):
        module.train() if training else module.eval()
        x = paddle.to_tensor(image, stop_gradient=False)
        out = module(x)
        (out * weights).sum().backward()
        results.append([out.numpy(), x.grad.numpy()]
                       + [p.grad.numpy() for p in module.parameters() if not p.stop_gradient])
    ours_out, *ours_grads = results[0]
    reference_out, *reference_grads = results[1]
    assert_same_family([ours_out], [reference_out], PYRAMID_FORWARD_RTOL)
    if training:   # batch statistics: analytically zero or amplified gradients, bounded only by the family's scale
        assert_same_family(ours_grads, reference_grads, PYRAMID_BACKWARD_RTOL)
    else:          # running statistics: each gradient within the bound of its own scale
        for mine, theirs in zip(ours_grads, reference_grads):
            assert_same_family([mine], [theirs], PYRAMID_BACKWARD_RTOL)
    assert np.abs(ours_out).max() > 0.1


def test_pspnet_fusion_forms_agree_and_bad_fusion_is_named():
    paddle.seed(0)
    factored = ZooPSPNet(5, ResNetVd(18), pp_out_channels=32)
    concat = ZooPSPNet(5, ResNetVd(18), pp_out_channels=32, fusion='concat')
    concat.set_state_dict(factored.state_dict())
    factored.eval()
    concat.eval()
    image = paddle.to_tensor(np.random.default_rng(0).standard_normal((1, 3, 72, 56)).astype('float32'))
    with paddle.no_grad():
        assert_same_forward(factored(image)[0].numpy(), concat(image)[0].numpy())   # ResNet18: within ResNet50's bound
    with pytest.raises(ValueError, match="fusion: expected one of \\['factored', 'concat'\\], got 'sum'"):
        ZooPSPNet(5, ResNetVd(18), fusion='sum')


def test_auxiliary_head_channels_default_to_a_quarter_of_its_input_as_paddleseg():
    assert ZooPSPNet(5, ResNetVd(18)).head.auxlayer.conv.weight.shape == [5, 64, 1, 1]  # stage 3: 256 channels
    assert ZooPSPNet(5, ResNetVd(18), aux_channels=32).head.auxlayer.conv.weight.shape == [5, 32, 1, 1]


def test_pspnet_resnet50_parameter_count_matches_paddleseg():
    ours, ref = build_pair('PSPNet', 'ResNet50')
    assert count_parameters(ours)[0] == 67_863_942
    assert count_parameters(ours) == count_parameters(ref)


@pytest.mark.parametrize('ours_class, ref_class, depth',
                         [(ZooResNet50_vd, ResNet50_vd, 50), (ZooResNet101_vd, ResNet101_vd, 101)])
def test_backbone_alone_has_paddleseg_keys(ours_class, ref_class, depth):
    ours, ref = ours_class(output_stride=8), ref_class(output_stride=8)
    assert {k: list(v.shape) for k, v in ours.state_dict().items()} == \
        {k: list(v.shape) for k, v in ref.state_dict().items()}


def test_resnet18_basic_blocks_match_paddleseg_and_output_strides():
    assert list(ResNetVd(18).state_dict()) == list(ResNet18_vd(output_stride=8).state_dict())
    image = paddle.zeros([1, 3, 64, 64])
    for stride in (8, 16, 32):
        features = ResNetVd(18, output_stride=stride)(image)
        assert [f.shape[-1] for f in features] == [16, 8, 64 // min(stride, 16), 64 // stride]


def test_training_mode_adds_the_auxiliary_logits():
    model = ZooPSPNet(3, ResNetVd(18), pp_out_channels=32)
    model.train()
    main, aux = model(paddle.zeros([2, 3, 64, 64]))
    assert list(main.shape) == list(aux.shape) == [2, 3, 64, 64]


@pytest.mark.parametrize('kwargs, absent, present', [
    (dict(enable_auxiliary_loss=False), 'head.auxlayer.conv.weight', 'head.conv.weight'),
    (dict(dim_reduction=False), None, 'head.psp_module.stages.0.1._conv.weight'),
    (dict(bin_sizes=(1, 3)), 'head.psp_module.stages.2.1._conv.weight', 'head.psp_module.stages.1.1._conv.weight'),
    (dict(pooling='max'), None, 'head.psp_module.stages.3.1._conv.weight'),
])
def test_pspnet_design_options(kwargs, absent, present):
    model = ZooPSPNet(5, ResNetVd(18), **kwargs)
    state = model.state_dict()
    assert present in state and (absent is None or absent not in state)
    if kwargs.get('dim_reduction') is False:  # each branch keeps the 512 input channels
        assert list(state[present].shape) == [512, 512, 1, 1]
    if 'pooling' in kwargs:
        assert isinstance(model.head.psp_module.stages[0][0], paddle.nn.AdaptiveMaxPool2D)
    model.eval()
    assert list(model(paddle.zeros([1, 3, 64, 64]))[0].shape) == [1, 5, 64, 64]


def test_deeplabv3_design_options():
    model = ZooDeepLabV3(4, ResNetVd(18, multi_grid=[1, 2]), aspp_ratios=(1, 6), image_pooling=False)
    state = model.state_dict()
    assert 'head.aspp.global_avg_pool.1._conv.weight' not in state
    assert list(state['head.aspp.conv_bn_relu._conv.weight'].shape) == [256, 512, 1, 1]
    assert model.backbone.bb_3_0.conv0._conv._dilation == [4, 4]  # OS8: stage 4 dilation 4 x multi_grid
    assert model.backbone.bb_3_1.conv1._conv._dilation == [8, 8]


@pytest.mark.parametrize('build, message', [
    (lambda: ResNetVd(42), 'depth: expected one of [18, 34, 50, 101, 152], got 42'),
    (lambda: ResNetVd(50, output_stride=4), 'output_stride: expected one of [8, 16, 32], got 4'),
    (lambda: ResNetVd(50, multi_grid=[1, 2]), 'multi_grid: expected 3 positive integers'),
    (lambda: ZooPSPNet(19, ResNetVd(18), bin_sizes=[]), 'bin_sizes: expected a non-empty list'),
    (lambda: ZooPSPNet(0, ResNetVd(18)), 'num_classes: expected an integer >= 1, got 0'),
    (lambda: ZooDeepLabV3(19, ResNetVd(18), aspp_ratios=[]), 'aspp_ratios: expected a non-empty list'),
    (lambda: ZooPSPNet(19, ResNetVd(18), pooling='median'), "pooling: expected one of ['avg', 'max']"),
])
def test_bad_arguments_raise_value_error_naming_them(build, message):
    with pytest.raises(ValueError, match=None) as info:
        build()
    assert message in str(info.value)


def test_paddleseg_checkpoint_loads_with_nothing_missing(tmp_path, capsys):
    paddle.seed(0)
    ours, ref = build_pair('PSPNet', 'ResNet50')
    ref.set_state_dict(random_state(ref.state_dict()))
    path = str(tmp_path / 'model.pdparams')
    paddle.save(ref.state_dict(), path)
    report = load_weights(ours, path)
    assert report['missing'] == report['unexpected'] == report['mismatched'] == []
    assert len(report['loaded']) == 315
    for key, value in ref.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[key].numpy(), value.numpy())
    assert f'loaded 315/315 tensors from {path}' in capsys.readouterr().err


def test_other_class_count_skips_classifier_tensors_with_one_line_each(tmp_path, capsys):
    source = ZooDeepLabV3(19, ResNetVd(18, multi_grid=[1, 1]))
    path = str(tmp_path / 'model.pdparams')
    paddle.save(source.state_dict(), path)
    target = ZooDeepLabV3(21, ResNetVd(18, multi_grid=[1, 1]))
    report = load_weights(target, path)
    assert report['mismatched'] == ['head.cls.weight', 'head.cls.bias']
    out = capsys.readouterr().err.splitlines()
    assert any('skip head.cls.weight: checkpoint shape [19, 256, 1, 1], model shape [21, 256, 1, 1]' in line
               for line in out)
    total = len(target.state_dict())
    assert any(f'loaded {total - 2}/{total} tensors' in line for line in out)
    with pytest.raises(UserError, match='weights of another model.*head.cls.weight'):
        load_weights(target, path, strict=True)


def test_a_file_that_is_not_a_state_dict_is_named(tmp_path):
    path = tmp_path / 'notes.pdparams'
    path.write_text('<html>not a checkpoint</html>')
    with pytest.raises(UserError) as info:
        load_weights(ResNetVd(18), str(path))
    assert str(path) in str(info.value) and '\n' not in str(info.value)


def test_registered_names_leave_paddleseg_builtins_alone():
    assert manager.MODELS['ZooPSPNet'] is ZooPSPNet and manager.MODELS['ZooDeepLabV3'] is ZooDeepLabV3
    assert manager.BACKBONES['ZooResNet50_vd'] is ZooResNet50_vd
    assert manager.BACKBONES['ZooResNet101_vd'] is ZooResNet101_vd
    assert manager.LOSSES['ZooCrossEntropyLoss'] is paddle_psp.models.losses.ZooCrossEntropyLoss
    assert manager.MODELS['PSPNet'] is PSPNet and manager.BACKBONES['ResNet50_vd'] is ResNet50_vd


def test_import_emits_no_warnings_of_ours():
    code = ('import warnings, paddle, paddleseg\n'
            'with warnings.catch_warnings(record=True) as caught:\n'
            '    warnings.simplefilter("always")\n'
            '    import paddle_psp\n'
            'print(len(caught)); [print(w.filename, w.message) for w in caught]\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == '0', out


def test_yaml_builds_our_classes_through_paddleseg_config(tmp_path):
    root = make_cityscapes_like(str(tmp_path / 'data'), num_train=2, num_val=1, size=(64, 32))
    dataset = {'type': 'Cityscapes', 'dataset_root': root, 'transforms': [{'type': 'Normalize'}]}
    config = {'batch_size': 1, 'iters': 1, 'train_dataset': dict(dataset, mode='train'),
              'val_dataset': dict(dataset, mode='val'),
              'optimizer': {'type': 'SGD', 'momentum': 0.9, 'weight_decay': 4.0e-5},
              'lr_scheduler': {'type': 'PolynomialDecay', 'learning_rate': 0.01, 'end_lr': 0, 'power': 0.9},
              'model': {'type': 'ZooPSPNet', 'num_classes': 19, 'pp_out_channels': 64,
                        'backbone': {'type': 'ZooResNet50_vd', 'output_stride': 8}},
              'loss': {'types': [{'type': 'ZooCrossEntropyLoss'}], 'coef': [1, 0.4]}}
    path = tmp_path / 'tiny.yml'
    path.write_text(yaml.safe_dump(config))
    builder = SegBuilder(Config(str(path)))
    assert isinstance(builder.model, ZooPSPNet) and isinstance(builder.model.backbone, ResNetVd)
    assert builder.model.head.conv.weight.shape == [19, 64, 1, 1]
