"""The worked example (examples/fcn_head.py, examples/fcn_head.yml): a third head trains with the real engine."""
import math
import os
import sys

import paddle
import yaml
from paddleseg.cvlibs import manager

from conftest import tiny_config_dict
from paddle_psp.engine import checkpoint as ckpt
from paddle_psp.engine import train
from paddle_psp.config import load_config

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'examples')
sys.path.insert(0, EXAMPLES)
import fcn_head  # noqa: E402  (registers ExampleFCN)


def test_example_head_is_registered_and_built_by_its_config():
    assert manager.MODELS['ExampleFCN'] is fcn_head.ExampleFCN
    model = load_config(os.path.join(EXAMPLES, 'fcn_head.yml')).model
    assert isinstance(model, fcn_head.ExampleFCN)
    assert sorted(key for key in model.state_dict() if key.startswith('head.')) == [
        'head.conv.bias', 'head.conv.weight', 'head.conv_bn_relu._batch_norm._mean',
        'head.conv_bn_relu._batch_norm._variance', 'head.conv_bn_relu._batch_norm.bias',
        'head.conv_bn_relu._batch_norm.weight', 'head.conv_bn_relu._conv.bias', 'head.conv_bn_relu._conv.weight']
    model.train()
    logits = model(paddle.zeros([1, 3, 48, 40]))
    assert len(logits) == 1 and list(logits[0].shape) == [1, 19, 48, 40]


def test_example_head_trains_with_the_real_engine(synthetic_root, tmp_path):
    """Its config (the example's model over the tiny dataset, 64x64 crops) trains 3 iterations and saves."""
    tiny = tiny_config_dict(synthetic_root, iters=3)
    config = {'_base_': os.path.join(EXAMPLES, 'fcn_head.yml'), 'batch_size': 2, 'iters': 3,
              'train_dataset': dict(tiny['train_dataset'], _inherited_=False),
              'val_dataset': dict(tiny['val_dataset'], _inherited_=False)}
    path = tmp_path / 'fcn_tiny.yml'
    path.write_text(yaml.safe_dump(config))
    save_dir = str(tmp_path / 'out')
    assert train.main(['--config', str(path), '--save_dir', save_dir, '--save_interval', '3',
                       '--log_iters', '1', '--seed', '0']) == 0
    checkpoint = os.path.join(save_dir, 'iter_3')
    assert os.path.isfile(os.path.join(checkpoint, 'model.pdparams'))
    recorded = ckpt.read_info(checkpoint)['losses']  # {iteration: [total, loss_0]}
    losses = [recorded[str(iteration)][0] for iteration in (1, 2, 3)]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    assert len(set(losses)) > 1  # the weights change
