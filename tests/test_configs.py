"""The eight zoo configs resolve (PaddleSeg `_base_` merging) to exactly the upstream hyperparameters.

No model is built here: only the YAML dictionaries are compared.
"""
import json
import os

import pytest
import yaml
from paddleseg.cvlibs.config import Config, parse_from_yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS_DIR = os.path.join(REPO_ROOT, 'configs')
BASE_DIR = os.path.join(CONFIGS_DIR, '_base_')
# The upstream configs resolved through their _base_ chains; its 'source' key says where they come from.
UPSTREAM_CONFIGS = os.path.join(REPO_ROOT, 'tests', 'data', 'upstream_configs.json')
MAX_LEAF_LINES = 15

# Our registered type names and the upstream names they stand for; every other value must be identical.
OUR_TYPE_TO_UPSTREAM = {
    'ZooPSPNet': 'PSPNet',
    'ZooDeepLabV3': 'DeepLabV3',
    'ZooResNet50_vd': 'ResNet50_vd',
    'ZooResNet101_vd': 'ResNet101_vd',
    'ZooCrossEntropyLoss': 'CrossEntropyLoss',
}
EXPECTED_LEAVES = {
    'cityscapes': [
        'pspnet_resnet50_os8_cityscapes_1024x512_80k',
        'pspnet_resnet101_os8_cityscapes_1024x512_80k',
        'deeplabv3_resnet50_os8_cityscapes_1024x512_80k',
        'deeplabv3_resnet101_os8_cityscapes_1024x512_80k',
    ],
    'voc12aug': [
        'pspnet_resnet50_os8_voc12aug_512x512_40k',
        'pspnet_resnet101_os8_voc12aug_512x512_40k',
        'deeplabv3_resnet50_os8_voc12aug_512x512_40k',
        'deeplabv3_resnet101_os8_voc12aug_512x512_40k',
    ],
}
ALL_LEAVES = [(folder, name) for folder, leaf_names in EXPECTED_LEAVES.items() for name in leaf_names]


def leaf_path(folder, name):
    """Path of a leaf config such as configs/cityscapes/<name>.yml."""
    return os.path.join(CONFIGS_DIR, folder, name + '.yml')


def to_upstream_names(node):
    """Copy of a resolved config with our `type:` names replaced by upstream's."""
    if isinstance(node, dict):
        return {key: (OUR_TYPE_TO_UPSTREAM.get(value, value) if key == 'type' else to_upstream_names(value))
                for key, value in node.items()}
    if isinstance(node, list):
        return [to_upstream_names(item) for item in node]
    return node


def differences(ours, reference, path='<root>'):
    """Every difference between two YAML/JSON trees, as 'key.path: what differs' strings.

    Values must have the same Python type (so 0 != 0.0, '1e-5' != 1e-05, True != 1) and be equal.
    """
    if type(ours) is not type(reference):
        return [f'{path}: {ours!r} ({type(ours).__name__}) != '
                f'upstream {reference!r} ({type(reference).__name__})']
    if isinstance(ours, dict):
        found = [f'{path}.{key}: missing (upstream {reference[key]!r})'
                 for key in reference if key not in ours]
        found += [f'{path}.{key}: not in upstream (ours {ours[key]!r})'
                  for key in ours if key not in reference]
        for key in ours.keys() & reference.keys():
            found += differences(ours[key], reference[key], f'{path}.{key}')
        return found
    if isinstance(ours, list):
        if len(ours) != len(reference):
            return [f'{path}: {len(ours)} items != upstream {len(reference)}: {ours!r} vs {reference!r}']
        found = []
        for index, (mine, theirs) in enumerate(zip(ours, reference)):
            found += differences(mine, theirs, f'{path}[{index}]')
        return found
    return [] if ours == reference else [f'{path}: {ours!r} != upstream {reference!r}']


@pytest.fixture(scope='module')
def upstream():
    """The resolved upstream configs, keyed by config name."""
    with open(UPSTREAM_CONFIGS, encoding='utf-8') as f:
        return json.load(f)['configs']


def test_reference_covers_exactly_the_expected_configs(upstream):
    assert sorted(upstream) == sorted(name for _, name in ALL_LEAVES)


def test_exactly_the_eight_leaf_configs_exist():
    found = set()
    for folder in os.listdir(CONFIGS_DIR):
        if folder not in ('cityscapes', 'voc12aug'):  # _base_/ and the quickstart's own config
            continue
        for file_name in os.listdir(os.path.join(CONFIGS_DIR, folder)):
            found.add((folder, file_name))
    assert found == {(folder, name + '.yml') for folder, name in ALL_LEAVES}


@pytest.mark.parametrize('folder,name', ALL_LEAVES)
def test_leaf_is_short_and_inherits(folder, name):
    with open(leaf_path(folder, name), encoding='utf-8') as f:
        lines = f.read().splitlines()
    assert len(lines) <= MAX_LEAF_LINES, f'{name}: {len(lines)} lines, expected <= {MAX_LEAF_LINES}'
    assert lines[0].startswith('_base_:'), f'{name}: first line should be the _base_ list'


@pytest.mark.parametrize('folder,name', ALL_LEAVES)
def test_resolved_config_equals_upstream(folder, name, upstream):
    resolved = parse_from_yaml(leaf_path(folder, name))
    found = differences(to_upstream_names(resolved), upstream[name])
    assert not found, f'{name}: differs from upstream:\n' + '\n'.join(found)


@pytest.mark.parametrize('folder,name', ALL_LEAVES)
def test_paddleseg_config_accepts_it_unchanged(folder, name):
    """PaddleSeg's Config (with its sanity-check rules) loads the file and changes nothing."""
    config = Config(leaf_path(folder, name))
    assert config.dic == parse_from_yaml(leaf_path(folder, name))
    assert {config.dic['model']['type'], config.dic['model']['backbone']['type']} <= set(OUR_TYPE_TO_UPSTREAM)
    assert {loss['type'] for loss in config.dic['loss']['types']} == {'ZooCrossEntropyLoss'}


def test_every_base_file_is_used():
    used = set()
    pending = [leaf_path(folder, name) for folder, name in ALL_LEAVES]
    while pending:
        path = pending.pop()
        with open(path, encoding='utf-8') as f:
            bases = _base_list(f.read())
        for base in bases:
            base_path = os.path.normpath(os.path.join(os.path.dirname(path), base))
            if base_path not in used:
                used.add(base_path)
                pending.append(base_path)
    on_disk = {os.path.join(BASE_DIR, file_name) for file_name in os.listdir(BASE_DIR)}
    assert used == on_disk


def _base_list(text):
    """The `_base_` entries of a YAML text, as a list."""
    bases = (yaml.safe_load(text) or {}).get('_base_', [])
    return [bases] if isinstance(bases, str) else bases


def test_pspnet_r101_voc_keeps_upstream_quirk():
    """Upstream's pspnet_resnet101_os8_voc12aug config has no ResizeStepScaling; ours says so."""
    path = leaf_path('voc12aug', 'pspnet_resnet101_os8_voc12aug_512x512_40k')
    transforms = [t['type'] for t in parse_from_yaml(path)['train_dataset']['transforms']]
    assert transforms == ['RandomPaddingCrop', 'RandomHorizontalFlip', 'RandomDistort', 'Normalize']
    with open(path, encoding='utf-8') as f:
        comments = [line for line in f if line.lstrip().startswith('#')]
    assert any('ResizeStepScaling' in line for line in comments)


def test_differences_names_the_key_path():
    """The comparison itself catches value, type, list and key differences."""
    reference = {'a': {'b': [1, {'c': 0.5}]}, 'end_lr': 0}
    assert differences(json.loads(json.dumps(reference)), reference) == []
    changed = {'a': {'b': [1, {'c': 0.25}]}, 'end_lr': 0.0, 'extra': 1}
    found = differences(changed, reference)
    assert any(item.startswith('<root>.a.b[1].c:') for item in found)
    assert any(item.startswith('<root>.end_lr:') and 'float' in item for item in found)
    assert any(item.startswith('<root>.extra: not in upstream') for item in found)
    shorter = differences({'a': {'b': [1]}, 'end_lr': 0}, reference)
    assert len(shorter) == 1 and shorter[0].startswith('<root>.a.b: 1 items != upstream 2')
    assert differences({'a': {'b': [1, {'c': 0.5}]}}, reference) == ['<root>.end_lr: missing (upstream 0)']
    assert to_upstream_names({'type': 'ZooPSPNet', 'backbone': {'type': 'ZooResNet50_vd'}}) == {
        'type': 'PSPNet', 'backbone': {'type': 'ResNet50_vd'}}
