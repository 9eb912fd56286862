"""Shared fixtures: a tiny generated Cityscapes-layout dataset and small YAML configs that train in seconds.

    def test_x(synthetic_root, make_config, tmp_path):
        cfg_path = make_config(tmp_path, iters=4)                   # PSPNet R50, 64x64 crops, batch 2
        cfg_path = make_config(tmp_path, model='ZooDeepLabV3', crop=(128, 64), name='dl.yml')
"""
import copy
import os

import paddle
import pytest
import yaml

from paddle_psp.core import runtime
from paddle_psp.data.synthetic import make_cityscapes_like
from paddle_psp.config import load_config

SYNTHETIC_SPEC = {'num_train': 8, 'num_val': 4, 'size': (128, 64), 'seed': 0}
# Environment for subprocesses: fast convolutions on AMD CPUs. Their math threads are paddle-psp's default
# (the physical cores, split among local ranks: core/runtime.py), which the training tests thereby cover.
SUBPROCESS_ENV = {'MKL_DEBUG_CPU_TYPE': '5'}
# The int8 tests check the int8 machinery (calibration, cache entries, warm starts, the CLI), which is the same
# on every CPU, so they run on CPUs without VNNI too, where paddleseg refuses int8 by default; the refusal
# itself is tested with this variable removed (tests/test_int8_cpu.py, tests/test_bad_input.py).
os.environ['PADDLE_PSP_UNSAFE_INT8'] = '1'


@pytest.fixture(autouse=True)
def undo_cpu_tuning():
    """An in-process ``paddleseg`` call applies the CPU tuning to the test process (its variables, which
    subprocesses would inherit as the user's, and Paddle's math threads): undo it after each test, so that
    no later test depends on which ran before."""
    names = runtime.TUNING_VARIABLES + (runtime.NO_TUNING_VAR,)
    saved, threads = {name: os.environ.get(name) for name in names}, runtime.math_threads()
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if runtime.math_threads() != threads:
        runtime.set_math_threads(threads)


@pytest.fixture(scope='session')
def synthetic_root(tmp_path_factory):
    """A Cityscapes-layout dataset (8 train, 4 val images of 128x64, 19 classes) shared by all tests."""
    return make_cityscapes_like(str(tmp_path_factory.mktemp('synthcity')), **SYNTHETIC_SPEC)


@pytest.fixture
def make_config(synthetic_root):
    """``make_config(directory, **options)`` writes a small config on ``synthetic_root``; see write_config."""
    def make(directory, **options):
        options.setdefault('data_root', synthetic_root)
        return write_config(directory, **options)
    return make


def tiny_config_dict(data_root, model='ZooPSPNet', crop=(64, 64), batch_size=2, iters=4):
    """A zoo-like config (the published schedule and augmentations) whose model and crops are tiny.

    ResNet50-vd OS8 as in the zoo; PSPNet's pyramid has 32 channels and bins (1, 2), DeepLabV3's ASPP 32
    channels, so a training step at 64x64 takes about a second on two cores.
    """
    heads = {
        'ZooPSPNet': ({'pp_out_channels': 32, 'bin_sizes': [1, 2], 'enable_auxiliary_loss': True}, [1, 0.4]),
        'ZooDeepLabV3': ({'aspp_out_channels': 32, 'aspp_ratios': [1, 2], 'backbone_indices': [3]}, [1]),
    }
    head, coef = heads[model]
    dataset = {'type': 'Cityscapes', 'dataset_root': str(data_root)}
    return {
        'batch_size': batch_size,
        'iters': iters,
        'train_dataset': dict(dataset, mode='train', transforms=[
            {'type': 'ResizeStepScaling', 'min_scale_factor': 0.5, 'max_scale_factor': 2.0,
             'scale_step_size': 0.25},
            {'type': 'RandomPaddingCrop', 'crop_size': list(crop)},
            {'type': 'RandomHorizontalFlip'},
            {'type': 'RandomDistort', 'brightness_range': 0.4, 'contrast_range': 0.4, 'saturation_range': 0.4},
            {'type': 'Normalize'}]),
        'val_dataset': dict(dataset, mode='val', transforms=[{'type': 'Normalize'}]),
        'optimizer': {'type': 'SGD', 'momentum': 0.9, 'weight_decay': 4.0e-5},
        'lr_scheduler': {'type': 'PolynomialDecay', 'learning_rate': 0.01, 'end_lr': 0, 'power': 0.9},
        'loss': {'types': [{'type': 'ZooCrossEntropyLoss'}], 'coef': coef},
        'model': dict({'type': model, 'backbone': {'type': 'ZooResNet50_vd', 'output_stride': 8},
                       'align_corners': False, 'pretrained': None}, **copy.deepcopy(head)),
    }


def write_config(directory, name='tiny.yml', data_root=None, model='ZooPSPNet', crop=(64, 64), batch_size=2,
                 iters=4, **top_level):
    """Write :func:`tiny_config_dict` (plus ``top_level`` keys, which replace whole sections) to
    ``directory/name`` and return its path."""
    dic = tiny_config_dict(data_root, model=model, crop=crop, batch_size=batch_size, iters=iters)
    dic.update(top_level)
    path = os.path.join(str(directory), name)
    with open(path, 'w') as file:
        yaml.safe_dump(dic, file, sort_keys=False)
    return path


def write_checkpoints(directory, data_root, seed):
    """Tiny ZooPSPNet and ZooDeepLabV3 configs with random checkpoints (``paddle.seed(seed)``) in
    ``directory``: ``{'config': PSPNet config, 'checkpoint': its weights, 'other_checkpoint': DeepLabV3's}``."""
    paths = {}
    for model in ('ZooPSPNet', 'ZooDeepLabV3'):
        paths[model] = write_config(directory, name=model + '.yml', data_root=data_root, model=model)
        paddle.seed(seed)
        paddle.save(load_config(paths[model]).model.state_dict(), os.path.join(str(directory), model + '.pdparams'))
    return {'config': paths['ZooPSPNet'], 'checkpoint': os.path.join(str(directory), 'ZooPSPNet.pdparams'),
            'other_checkpoint': os.path.join(str(directory), 'ZooDeepLabV3.pdparams')}
