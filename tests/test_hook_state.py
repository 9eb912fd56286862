"""Hooks own their state: a hook's ``checkpoint_state`` files land in every ``iter_N`` and come back on resume
through ``ResumeState.state_file``; ``--data_format`` is rewritten in the config before validation."""
import os

import paddle
import pytest

from paddle_psp.config.overrides import apply_data_format
from paddle_psp.core.errors import UserError
from paddle_psp.engine import checkpoint as ckpt
from paddle_psp.engine import train
from paddle_psp.engine.hooks import Hook

STATE_FILE = 'counter.pdparams'


class CountingHook(Hook):
    """Counts iterations from 10 across a resume, saving the count as its own checkpoint file. As an extra
    hook it runs after CheckpointHook, so ``iter_N`` holds its count from before step N."""

    def __init__(self):
        self.count, self.restored = 0, None

    def before_train(self, trainer):
        saved = trainer.resume.state_file(STATE_FILE) if trainer.resume is not None else None
        self.restored = None if saved is None else int(saved['count'].numpy())
        self.count = 10 if self.restored is None else self.restored

    def after_step(self, trainer, step):
        self.count += 1

    def checkpoint_state(self, trainer):
        return {STATE_FILE: {'count': paddle.to_tensor(self.count, dtype='int64')}}


def test_a_hook_saves_its_state_and_gets_it_back_on_resume(tmp_path, make_config):
    config = make_config(tmp_path, iters=2)
    save_dir = str(tmp_path / 'run')
    common = ['--config', config, '--save_interval', '1', '--log_iters', '1', '--seed', '3', '--save_dir', save_dir]
    first = CountingHook()
    assert train.main(common + ['--iters', '1'], extra_hooks=[first]) == 0
    assert first.restored is None and first.count == 11
    iter_1 = os.path.join(save_dir, 'iter_1')
    assert ckpt.ResumeState.load(iter_1).state_file(STATE_FILE)['count'].numpy() == 10
    assert ckpt.ResumeState.load(iter_1).state_file('other.pdparams') is None
    resumed = CountingHook()
    assert train.main(common + ['--resume_model', iter_1], extra_hooks=[resumed]) == 0
    assert resumed.restored == 10 and resumed.count == 11
    assert ckpt.ResumeState.load(os.path.join(save_dir, 'iter_2')).state_file(STATE_FILE)['count'].numpy() == 10


def test_the_base_hook_contributes_nothing():
    assert Hook().checkpoint_state(None) == {}


def test_data_format_rewrite_reaches_model_backbone_and_losses():
    dic = {'model': {'type': 'ZooPSPNet', 'backbone': {'type': 'ZooResNet50_vd'}},
           'loss': {'types': [{'type': 'ZooCrossEntropyLoss'}], 'coef': [1]}}
    apply_data_format(dic, 'x.yml', 'NHWC')
    assert dic['model']['data_format'] == 'NHWC' and dic['model']['backbone']['data_format'] == 'NHWC'
    assert dic['loss']['types'][0]['data_format'] == 'NHWC'
    untouched = {'model': {'type': 'ZooPSPNet'}}
    apply_data_format(untouched, 'x.yml', 'NCHW')
    assert 'data_format' not in untouched['model']
    apply_data_format({'model': 'not a section'}, 'x.yml', 'NHWC')  # left for validation to report


def test_data_format_rewrite_refuses_a_component_without_it():
    dic = {'model': {'type': 'UNet'}, 'loss': {'types': [{'type': 'ZooCrossEntropyLoss'}], 'coef': [1]}}
    with pytest.raises(UserError, match=r'--data_format NHWC: model: UNet takes no data_format'):
        apply_data_format(dic, 'x.yml', 'NHWC')
