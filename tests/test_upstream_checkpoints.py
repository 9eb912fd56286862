"""PaddleSeg's checkpoint folders and offline machines: ``--resume_model`` takes an ``iter_N`` folder written by
PaddleSeg's tools/train.py, ``--model_path`` its ``best_model/``, and no evaluation verb downloads the
``pretrained`` weights that the checkpoint replaces.

The PaddleSeg folders are written here as PaddleSeg writes them: ``paddle.save`` of a PaddleSeg model's state
dict and of its optimizer's state dict after training steps, in ``iter_N/model.pdparams`` and ``model.pdopt``.
"""
import os
import socket

import numpy as np
import paddle
import pytest
from paddleseg.cvlibs import manager

import paddle_psp_cli as cli
from paddle_psp.engine.flags import train_parser
from paddle_psp.config import load_config
from paddle_psp.core.errors import UserError
from paddle_psp.engine import checkpoint as ckpt
from paddle_psp.engine import train
from paddle_psp.models.losses import ZooCrossEntropyLoss
from paddle_psp.weights import hub
from tests.conftest import write_checkpoints

ITERS = 4  # the tiny config's iters, which PaddleSeg's run used too
MOMENTUM, WEIGHT_DECAY = 0.9, 4e-5


def write_paddleseg_iter(save_dir, steps, seed=3):
    """``save_dir/iter_{steps}`` as PaddleSeg's tools/train.py writes it, of PaddleSeg's own PSPNet with the
    tiny config's hyperparameters; its parameters have the internal names of another process."""
    with paddle.utils.unique_name.guard():  # names as in another process that created other layers first
        paddle.seed(seed)
        paddle.nn.Conv2D(1, 1, 1)
        model = manager.MODELS['PSPNet'](19, manager.BACKBONES['ResNet50_vd'](output_stride=8), pp_out_channels=32,
                                         bin_sizes=[1, 2])
        scheduler = paddle.optimizer.lr.PolynomialDecay(0.01, decay_steps=ITERS, end_lr=0, power=0.9)
        optimizer = paddle.optimizer.Momentum(scheduler, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
                                              parameters=model.parameters())
        loss = ZooCrossEntropyLoss()
        model.train()
        for _ in range(steps):
            images, labels = paddle.rand([2, 3, 64, 64]), paddle.randint(0, 19, [2, 64, 64])
            sum(coef * loss(logit, labels) for coef, logit in zip([1, 0.4], model(images))).backward()
            optimizer.step()
            optimizer.clear_grad()
            scheduler.step()
    path = os.path.join(str(save_dir), f'iter_{steps}')
    os.makedirs(path)
    paddle.save(model.state_dict(), os.path.join(path, 'model.pdparams'))
    paddle.save(optimizer.state_dict(), os.path.join(path, 'model.pdopt'))
    return path, model, optimizer


def test_resume_from_a_paddleseg_iter_folder(tmp_path, make_config):
    config = make_config(tmp_path, iters=ITERS)
    path, saved_model, saved_optimizer = write_paddleseg_iter(tmp_path / 'paddleseg_output', steps=1)
    assert not ckpt.is_paddleseg_checkpoint(str(tmp_path)) and ckpt.is_paddleseg_checkpoint(path)
    args = train_parser().parse_args(['--config', config, '--resume_model', path,
                                              '--save_dir', str(tmp_path / 'out')])
    trainer = train.Trainer(args)
    assert trainer.start_iter == 1
    assert trainer.optimizer.get_lr() == pytest.approx(saved_optimizer.state_dict()['LR_Scheduler']['last_lr'])
    saved_state = {k: v.numpy() for k, v in saved_model.state_dict().items()}
    before = {k: v.numpy() for k, v in trainer.model.state_dict().items()}
    assert sorted(before) == sorted(saved_state)
    for key in saved_state:
        np.testing.assert_array_equal(before[key], saved_state[key])
    # One step with zero gradients moves each weight by -lr * (momentum * velocity + decay * weight) when the
    # velocities were restored (by -lr * decay * weight when they were not).
    trainable = [p for p in trainer.model.parameters() if not p.stop_gradient]
    paddle.add_n([(p * 0).sum() for p in trainable]).backward()
    lr = trainer.optimizer.get_lr()
    trainer.optimizer.step()
    velocities = {name: saved_optimizer.state_dict()[param.name + '_velocity_0'].numpy()
                  for name, param in saved_model.named_parameters() if not param.stop_gradient}
    after = dict(trainer.model.named_parameters())
    for key in ('backbone.conv1_1._conv.weight', 'head.psp_module.conv_bn_relu2._conv.weight', 'head.conv.bias'):
        assert np.abs(velocities[key]).max() > 0
        expected = before[key] - lr * (MOMENTUM * velocities[key] + WEIGHT_DECAY * before[key])
        np.testing.assert_allclose(after[key].numpy(), expected, rtol=1e-5, atol=1e-8)


def test_training_goes_on_from_a_paddleseg_iter_folder(tmp_path, make_config, capsys):
    config = make_config(tmp_path, iters=ITERS)
    path, _, _ = write_paddleseg_iter(tmp_path / 'paddleseg_output', steps=2)
    save_dir = tmp_path / 'out'
    capsys.readouterr()
    assert cli.main(['train', '--config', config, '--resume_model', path, '--iters', '3', '--save_dir',
                     str(save_dir), '--save_interval', '1']) == 0
    err = capsys.readouterr().err
    assert 'a PaddleSeg tools/train.py checkpoint (no checkpoint.json): iter 2 from its name' in err
    assert f'resumed from {path} at iter 2' in err
    assert [i for i, _ in ckpt.list_checkpoints(str(save_dir))] == [3]
    assert list(ckpt.read_info(str(save_dir / 'iter_3'))['losses']) == ['3']


def test_an_iter_folder_without_the_optimizer_state_is_incomplete(tmp_path):
    path = tmp_path / 'iter_2'
    os.makedirs(path)
    paddle.save({'w': paddle.ones([1])}, str(path / 'model.pdparams'))
    assert not ckpt.is_paddleseg_checkpoint(str(path))
    with pytest.raises(UserError, match=r"incomplete checkpoint .*\(or PaddleSeg's iter_N with model.pdparams"):
        ckpt.ResumeState.load(str(path))


# ---------------------------------------------------------------- verbs given a checkpoint (--model_path)
@pytest.fixture
def offline(monkeypatch):
    """A URL on a closed local port; every connection attempt of this process is recorded and refused."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    attempts = []

    def refuse(sock, address):
        attempts.append(address)
        raise ConnectionRefusedError(f'refused {address}')

    monkeypatch.setattr(socket.socket, 'connect', refuse)
    return f'http://127.0.0.1:{port}', attempts


def test_verbs_given_a_checkpoint_never_fetch_pretrained_weights(tmp_path, synthetic_root, offline, capsys):
    """val, predict, export and benchmark of a config with PaddleSeg's type names and unreachable pretrained
    URLs, given PaddleSeg's best_model/ folder."""
    url, attempts = offline
    paths = write_checkpoints(tmp_path, synthetic_root, seed=0)
    best = tmp_path / 'output' / 'best_model'  # PaddleSeg's layout: model.pdparams only
    os.makedirs(best)
    os.replace(paths['checkpoint'], best / 'model.pdparams')
    opts = ['--opts', f'model.backbone.pretrained={url}/resnet50_vd_ssld_v2.tar.gz',
            f'model.pretrained={url}/pspnet.pdparams', 'model.type=PSPNet', 'model.backbone.type=ResNet50_vd']
    common = ['--config', paths['config'], '--model_path', str(best)]
    image = os.path.join(synthetic_root, 'leftImg8bit', 'val')
    image = os.path.join(image, os.listdir(image)[0])
    image = os.path.join(image, sorted(os.listdir(image))[0])
    commands = {'val': [],
                'predict': ['--image_path', image, '--save_dir', str(tmp_path / 'predicted')],
                'export': ['--save_dir', str(tmp_path / 'exported'), '--input_shape', '1', '3', '64', '128'],
                'benchmark': ['--save_dir', str(tmp_path / 'benchmark'), '--dygraph', '--limit', '1', '--scales',
                              '1.0']}
    for verb, flags in commands.items():
        capsys.readouterr()
        assert cli.main([verb] + common + flags + opts) == 0, capsys.readouterr().err
    assert attempts == []
    assert os.listdir(tmp_path / 'predicted') and os.listdir(tmp_path / 'exported')


def test_training_still_loads_pretrained_weights(tmp_path, make_config, monkeypatch):
    config = make_config(tmp_path)
    fetched = []

    def resolve(spec, *args, **kwargs):
        fetched.append(spec)
        raise UserError(f'{spec}: offline')

    monkeypatch.setattr(hub, 'resolve', resolve)
    cfg = load_config(config, opts=['model.backbone.pretrained=http://127.0.0.1:9/backbone.tar.gz'])
    cfg.build_model(pretrained=False)
    assert fetched == []
    with pytest.raises(UserError, match='backbone.tar.gz: offline'):
        cfg.model  # noqa: B018  (what training builds)
    assert fetched == ['http://127.0.0.1:9/backbone.tar.gz']
