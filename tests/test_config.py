"""load_config: PaddleSeg's _base_ merging, overrides, --opts, one-line errors, and the built components."""
import glob
import os
import shutil

import paddle
import pytest
import yaml
from paddleseg.cvlibs.config import parse_from_yaml

from conftest import write_config
from paddle_psp.config import build_val_dataset, load_config
from paddle_psp.core.errors import UserError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_yaml(path, dic_or_text):
    with open(path, 'w') as file:
        file.write(dic_or_text if isinstance(dic_or_text, str) else yaml.safe_dump(dic_or_text))
    return str(path)


def one_line_error(call, *args, **kwargs):
    """The message of the UserError ``call`` raises, checked to be a single line."""
    with pytest.raises(UserError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert '\n' not in message and message
    return message


@pytest.fixture
def tiny(tmp_path, make_config):
    return make_config(tmp_path)


# --------------------------------------------------------------------------------------- inheritance
def test_base_merging_follows_paddleseg(tmp_path):
    os.makedirs(tmp_path / 'base')
    write_yaml(tmp_path / 'base' / 'a.yml', {'iters': 10, 'batch_size': 2, 'model': {'type': 'ZooPSPNet',
               'backbone': {'type': 'ZooResNet50_vd', 'output_stride': 8}, 'bin_sizes': [1, 2, 3, 6]},
               'optimizer': {'type': 'SGD', 'momentum': 0.9}})
    write_yaml(tmp_path / 'base' / 'b.yml', {'_base_': './a.yml', 'iters': 20,
                                             'lr_scheduler': {'type': 'StepDecay'},
                                             'optimizer': {'_inherited_': False, 'type': 'SGD'}})
    leaf = write_yaml(tmp_path / 'leaf.yml', {'_base_': ['base/a.yml', 'base/b.yml'], 'batch_size': 4,
                                              'model': {'backbone': {'output_stride': 16}, 'bin_sizes': [1]},
                                              'lr_scheduler': {'type': 'PolynomialDecay'}})
    dic = load_config(leaf).dic
    assert dic == parse_from_yaml(leaf)  # PaddleSeg's own merge
    assert dic['iters'] == 10  # as in PaddleSeg, an earlier base in the list wins over a later one
    assert dic['batch_size'] == 4  # the leaf wins
    assert dic['model'] == {'type': 'ZooPSPNet', 'backbone': {'type': 'ZooResNet50_vd', 'output_stride': 16},
                            'bin_sizes': [1]}  # dicts merge key by key, lists are replaced
    assert load_config(str(tmp_path / 'base' / 'b.yml')).dic['optimizer'] == {'type': 'SGD'}  # _inherited_


def test_the_repository_configs_validate(synthetic_root):
    paths = sorted(glob.glob(os.path.join(REPO_ROOT, 'configs', '*', '*.yml')))
    paths = [p for p in paths if os.path.basename(os.path.dirname(p)) != '_base_']
    zoo = [p for p in paths if os.path.basename(os.path.dirname(p)) in ('cityscapes', 'voc12aug')]
    assert len(zoo) == 8
    for path in paths:
        cfg = load_config(path, iters=100)
        cfg.check_training()
        assert cfg.iters == 100
        if path in zoo:
            assert cfg.dic['lr_scheduler']['type'] == 'PolynomialDecay'
        if cfg.dic['train_dataset']['type'] == 'Cityscapes':  # reads the generated Cityscapes layout
            cfg = load_config(path, opts=[f'train_dataset.dataset_root={synthetic_root}'])
            assert len(cfg.train_dataset) == 8


# ------------------------------------------------------------------------------------------- errors
def test_missing_malformed_and_cyclic_files(tmp_path, tiny):
    assert 'config file not found' in one_line_error(load_config, str(tmp_path / 'nope.yml'))
    assert 'is a directory' in one_line_error(load_config, str(tmp_path))
    bad = write_yaml(tmp_path / 'bad.yml', 'iters: 10\nmodel:\n  type: [ZooPSPNet\nbatch_size: 2\n')
    message = one_line_error(load_config, bad)
    assert message.startswith(f'{bad}:4: malformed YAML')
    scalar = write_yaml(tmp_path / 'scalar.yml', 'just text\n')
    assert 'expected a YAML mapping' in one_line_error(load_config, scalar)
    orphan = write_yaml(tmp_path / 'orphan.yml', {'_base_': 'missing_base.yml'})
    assert 'missing_base.yml not found' in one_line_error(load_config, orphan)
    write_yaml(tmp_path / 'c1.yml', {'_base_': 'c2.yml'})
    write_yaml(tmp_path / 'c2.yml', {'_base_': 'c1.yml'})
    assert 'cycle' in one_line_error(load_config, str(tmp_path / 'c1.yml'))


@pytest.mark.parametrize('opt, expected', [
    ('model.type=ZooPSPNett', "model.type: unknown type 'ZooPSPNett' (not among the models); did you mean "
                              'ZooPSPNet'),
    ('model.backbone.type=ZooResNet50vd', 'did you mean ZooResNet50_vd'),
    ('loss.types.0.type=ZooCrossEntropy', "loss.types.0.type: unknown type 'ZooCrossEntropy'"),
    ('train_dataset.transforms.2.type=RandomFlip', 'train_dataset.transforms.2.type: unknown type'),
    ('lr_scheduler.type=Poly', 'did you mean PolynomialDecay'),
    ('optimizer.type=Momentun', 'did you mean Momentum'),
])
def test_unknown_type_names_key_and_close_matches(tiny, opt, expected):
    message = one_line_error(load_config, tiny, opts=[opt])
    assert message.startswith(tiny + ': ') and expected in message


def test_unknown_argument_and_bad_numbers(tiny):
    text = open(tiny).read().replace('pp_out_channels', 'pp_out_chanels')
    message = one_line_error(load_config, write_yaml(tiny, text))
    assert 'model.pp_out_chanels: not an argument of ZooPSPNet; did you mean pp_out_channels' in message
    assert 'batch_size: expected a positive integer' in one_line_error(load_config, tiny, batch_size=0)
    assert "iters: expected a positive integer, got 'x'" in one_line_error(load_config, tiny, opts=['iters=x'])


def test_missing_dataset_root_says_how_to_prepare(tiny, tmp_path):
    missing = str(tmp_path / 'no_cityscapes')
    cfg = load_config(tiny, opts=[f'train_dataset.dataset_root={missing}'])
    message = one_line_error(lambda: cfg.train_dataset)
    assert f'train_dataset.dataset_root: {missing} does not exist' in message
    assert f'paddleseg prepare cityscapes --root {missing}' in message
    voc_config = os.path.join(REPO_ROOT, 'configs', 'voc12aug', 'pspnet_resnet50_os8_voc12aug_512x512_40k.yml')
    voc = load_config(voc_config, opts=[f'val_dataset.dataset_root={missing}'])
    assert f'paddleseg prepare voc12aug --voc {missing} --sbd SBD_DIR' in one_line_error(lambda: voc.val_dataset)
    os.makedirs(os.path.join(missing, 'leftImg8bit'))
    assert 'has no gtFine/ folder' in one_line_error(lambda: load_config(
        tiny, opts=[f'val_dataset.dataset_root={missing}']).val_dataset)


def test_batch_larger_than_dataset(tiny):
    message = one_line_error(lambda: load_config(tiny, batch_size=9).train_dataset)
    assert 'batch_size: 9 is larger than train_dataset (8 images' in message


def test_missing_label_file_is_named(tmp_path, synthetic_root, make_config):
    root = shutil.copytree(synthetic_root, tmp_path / 'data')
    label = sorted(glob.glob(str(root / 'gtFine' / 'train' / '*' / '*.png')))[3]
    os.remove(label)
    cfg = load_config(make_config(tmp_path, data_root=str(root)))
    message = one_line_error(lambda: cfg.train_dataset)
    image = label.replace('gtFine_labelTrainIds', 'leftImg8bit').replace('gtFine', 'leftImg8bit')
    assert message.startswith(f'{image}: has no label in train_dataset ({label} is missing)')


# ------------------------------------------------------------------------------------------ building
def test_components_follow_the_zoo_schedule(tiny, synthetic_root, tmp_path):
    cfg = load_config(tiny, iters=50)
    model = cfg.model
    assert type(model).__name__ == 'ZooPSPNet' and model.num_classes == 19  # from the Cityscapes dataset
    optimizer, scheduler = cfg.optimizer, cfg.lr_scheduler
    assert type(optimizer).__name__ == 'Momentum' and optimizer._momentum == 0.9
    # L2 weight decay on every parameter, nothing excluded
    assert (optimizer._regularization_method, optimizer._regularization_coeff) == ('l2_decay', 4e-5)
    assert len(optimizer._parameter_list) == len(model.parameters())
    assert isinstance(scheduler, paddle.optimizer.lr.PolynomialDecay)
    assert (scheduler.decay_steps, scheduler.end_lr, scheduler.power, scheduler.base_lr) == (50, 0, 0.9, 0.01)
    assert optimizer._learning_rate is scheduler
    loss = cfg.loss
    assert loss['coef'] == [1.0, 0.4] and len(loss['types']) == 2  # one type, repeated per coef
    assert all(layer.ignore_index == 255 for layer in loss['types'])
    assert len(cfg.train_dataset) == 8 and len(cfg.val_dataset) == 4
    other_root = shutil.copytree(synthetic_root, tmp_path / 'other')
    assert build_val_dataset(cfg, str(other_root)).dataset_root == str(other_root)


def test_constructor_errors_become_one_line(tiny):
    cfg = load_config(tiny, opts=['model.backbone.output_stride=7'])
    message = one_line_error(lambda: cfg.model)
    assert 'model.backbone: cannot create ZooResNet50_vd' in message and 'output_stride' in message
    cfg = load_config(tiny, opts=['loss.types.0.ignore_index=0'])
    assert "ignore_index: 0 differs from the dataset's ignore index 255" in one_line_error(lambda: cfg.loss)
    cfg = load_config(tiny, opts=['optimizer.weight_decay="a lot"'])
    assert 'optimizer: cannot create Momentum' in one_line_error(lambda: cfg.optimizer)


def test_written_config_round_trips(tmp_path, synthetic_root):
    path = write_config(tmp_path, data_root=synthetic_root, model='ZooDeepLabV3', crop=(128, 64), iters=3)
    cfg = load_config(path)
    assert cfg.dic['train_dataset']['transforms'][1]['crop_size'] == [128, 64]
    assert yaml.safe_load(str(cfg)) == cfg.dic
