"""Gradients freed after each step (:class:`paddle_psp.engine.gradients.GradientRelease`) give the updates of
PaddleSeg's zeroing, bit for bit, and hold no memory between steps."""
import numpy as np
import paddle
import pytest

from paddle_psp.engine import train
from paddle_psp.engine.flags import train_parser
from paddle_psp.engine.gradients import GradientRelease, GradientZeroing


class Switch(paddle.nn.Layer):
    """Two linear layers; the second is used only when asked (a parameter without a gradient in some steps)."""

    def __init__(self):
        super().__init__()
        self.first = paddle.nn.Linear(4, 4)
        self.second = paddle.nn.Linear(4, 4)
        self.unused = paddle.nn.Linear(4, 4)  # never used: never updated, either way

    def forward(self, x, use_second):
        y = self.first(x)
        return self.second(y) if use_second else y


class NoFill(GradientRelease):
    """Gradients freed without the zero fill (what a plain ``clear_grad(set_to_zero=False)`` does)."""

    def before_update(self):
        pass


def train_switch(gradients_for, uses):
    """Weights of a seeded :class:`Switch` after one Momentum step (weight decay) per entry of ``uses``."""
    paddle.seed(3)
    model = Switch()
    optimizer = paddle.optimizer.Momentum(0.1, momentum=0.9, parameters=model.parameters(), weight_decay=0.01)
    gradients = gradients_for(model)
    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((2, 4)).astype('float32'))
    grads_after = []
    for use_second in uses:
        model(x, use_second).square().sum().backward()
        gradients.before_update()
        optimizer.step()
        gradients.after_update(optimizer)
        grads_after.append([p.grad is None for p in model.parameters()])
    return {k: v.numpy() for k, v in model.state_dict().items()}, grads_after


def test_release_updates_as_zeroing_when_a_parameter_misses_a_step():
    uses = [True, False, False, True]
    zeroed, zeroed_grads = train_switch(lambda model: GradientZeroing(), uses)
    released, released_grads = train_switch(lambda model: GradientRelease(model.parameters()), uses)
    for key in zeroed:
        np.testing.assert_array_equal(released[key], zeroed[key], err_msg=key)
    assert all(all(step) for step in released_grads)  # nothing held between steps
    assert not any(all(step) for step in zeroed_grads)
    # The zero gradients matter: without them `second` skips momentum and decay in steps 2-3 and ends elsewhere.
    plain, _ = train_switch(lambda model: NoFill(model.parameters()), uses)
    assert not np.array_equal(plain['second.weight'], zeroed['second.weight'])
    untrained, _ = train_switch(lambda model: GradientZeroing(), [])
    np.testing.assert_array_equal(released['unused.weight'], untrained['unused.weight'])


@pytest.mark.parametrize('model', ['ZooPSPNet', 'ZooDeepLabV3'])
def test_trainer_frees_gradients_and_trains_as_zeroing(tmp_path, make_config, model):
    """Two steps of the engine's ``train_step`` (freed gradients) and of the same trainer with PaddleSeg's
    zeroing: bit-identical weights; the engine's trainer holds no gradient after a step."""
    config = make_config(tmp_path, model=model, iters=2)
    rng = np.random.default_rng(0)
    images = paddle.to_tensor(rng.uniform(-1, 1, (2, 3, 64, 64)).astype('float32'))
    labels = paddle.to_tensor(rng.integers(0, 19, (2, 64, 64)).astype('int64'))
    weights = {}
    for way in ('release', 'zeroing'):
        trainer = train.Trainer(train_parser().parse_args(['--config', config, '--seed', '0',
                                                           '--save_dir', str(tmp_path / way)]))
        if way == 'zeroing':
            trainer.gradients = GradientZeroing()
        trainer.model.train()
        for iteration in range(2):
            paddle.seed(iteration)  # dropout, as the loop seeds it
            trainer.train_step(images, labels)
            held = [p.grad is not None for p in trainer.model.parameters() if not p.stop_gradient]
            assert all(held) if way == 'zeroing' else not any(held)
        weights[way] = {k: v.numpy() for k, v in trainer.model.state_dict().items()}
    assert weights['release'].keys() == weights['zeroing'].keys()
    for key in weights['release']:
        np.testing.assert_array_equal(weights['release'][key], weights['zeroing'][key], err_msg=key)
