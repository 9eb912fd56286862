"""The model zoo manifest: the eight published PSPNet/DeepLabV3 checkpoints, their configs and scores.

The manifest lives in ``zoo.json`` next to this module (shipped as package data). The YAML configs
ship with the package too (:mod:`paddle_psp.weights.shipped_configs`).

The README's zoo table is made from the manifest by ``scripts/zoo_readme.py`` (a maintainer's script, not
runtime code); the table's header is here because the benchmark's report shares it.
"""
import copy
import os

from paddle_psp.core.errors import UserError
from paddle_psp.weights.shipped_configs import configs_root
from paddle_psp.weights.zoo_listing import MANIFEST_PATH  # noqa: F401  (where the manifest is)
from paddle_psp.weights.zoo_listing import manifest as _manifest

TABLE_HEADER = ('| Model | Backbone | Resolution | Training Iters | mIoU | mIoU (flip) | mIoU (ms+flip) '
                '| Links |')
TABLE_ALIGN = '|:-:|:-:|:-:|:-:|:-:|:-:|:-:|:-:|'
FILTER_FIELDS = ('model', 'dataset', 'backbone')


def names():
    """Names of all zoo entries (upstream config names), in manifest order.

    Returns:
        list[str]: e.g. ``'pspnet_resnet50_os8_cityscapes_1024x512_80k'``.
    """
    return [entry['name'] for entry in _manifest()['models']]


def get(name):
    """Look up one zoo entry by name.

    Args:
        name (str): a config name such as ``'deeplabv3_resnet101_os8_voc12aug_512x512_40k'``.

    Returns:
        dict: a copy of the manifest entry.

    Raises:
        UserError: ``name`` is not in the zoo; the message lists the valid names.
    """
    for entry in _manifest()['models']:
        if entry['name'] == name:
            return copy.deepcopy(entry)
    raise UserError(f'model name {name!r}: not in the zoo; expected one of: {", ".join(names())}')


def entries(model=None, dataset=None, backbone=None):
    """Zoo entries matching every given filter (case-insensitive exact match).

    Args:
        model (str, optional): ``'PSPNet'`` or ``'DeepLabV3'``.
        dataset (str, optional): ``'cityscapes'`` or ``'voc12aug'``.
        backbone (str, optional): ``'ResNet50_OS8'`` or ``'ResNet101_OS8'``.

    Returns:
        list[dict]: copies of the matching entries, in manifest order.

    Raises:
        UserError: a filter value matches no entry at all; the message lists the valid values.
    """
    wanted = {'model': model, 'dataset': dataset, 'backbone': backbone}
    selected = _manifest()['models']
    for field in FILTER_FIELDS:
        if wanted[field] is not None:
            _check_filter_value(field, wanted[field])
            selected = [e for e in selected if e[field].lower() == wanted[field].lower()]
    return copy.deepcopy(selected)


def _check_filter_value(field, value):
    """Raise UserError if no entry has ``value`` (case-insensitively) in ``field``."""
    valid = sorted({entry[field] for entry in _manifest()['models']})
    if value.lower() not in {v.lower() for v in valid}:
        raise UserError(f'{field} {value!r}: not in the zoo; expected one of: {", ".join(valid)}')


def dataset_info(dataset):
    """Title and class count of a zoo dataset key.

    Args:
        dataset (str): ``'cityscapes'`` or ``'voc12aug'``.

    Returns:
        dict: ``{'title': ..., 'num_classes': ...}``.

    Raises:
        UserError: unknown dataset key.
    """
    datasets = _manifest()['datasets']
    if dataset not in datasets:
        raise UserError(f'dataset {dataset!r}: not in the zoo; expected one of: {", ".join(datasets)}')
    return dict(datasets[dataset])


def config_path(name, root=None):
    """Absolute path of an entry's YAML config.

    The configs ship with the package (:mod:`paddle_psp.weights.shipped_configs`); ``root`` looks in another
    folder holding a ``configs/`` tree instead.

    Args:
        name (str): a zoo entry name.
        root (str, optional): a folder holding ``configs/`` (default: the shipped configs).

    Returns:
        str: path of an existing ``.yml`` file.

    Raises:
        UserError: unknown name, or the config is not where it is looked for.
    """
    relative = get(name)['config']
    configs = os.path.join(root, 'configs') if root is not None else configs_root()
    if configs is not None:
        path = os.path.join(configs, os.path.relpath(relative, 'configs'))
        if os.path.isfile(path):
            return os.path.abspath(path)
    raise UserError(f'{relative}: not found under {configs or "this installation"}; expected the configs '
                    'shipped with paddle-psp (reinstall it: pip install paddle-psp)')
