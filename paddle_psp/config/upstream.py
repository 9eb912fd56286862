"""PaddleSeg 2.8 configs as its repository writes them (``type: PSPNet``, ``ResNet50_vd``,
``CrossEntropyLoss``) run unchanged: their PaddleSeg built-ins are replaced by ours in the config.

- ``CrossEntropyLoss`` -> ``ZooCrossEntropyLoss``: PaddleSeg 2.8's raises a TypeError on Paddle 3 (int64 x
  float32 type promotion); ours has the same arguments and semantics.
- ``PSPNet``/``DeepLabV3`` on ``ResNet50_vd``/``ResNet101_vd`` -> ``ZooPSPNet``/``ZooDeepLabV3`` on
  ``ZooResNet50_vd``/``ZooResNet101_vd``: PaddleSeg's work on Paddle 3, ours compute the same function with the
  same state dict keys (its checkpoints load), faster (the factored pyramid pooling), and take the fast
  inference path. A model is replaced only together with its backbone, and only when ours accepts every
  argument the config gives (else PaddleSeg's class is built).

PaddleSeg's registry entries stay as they are; only the config's ``type`` names change, and one INFO line
says what was replaced.
"""
import copy

from paddle_psp.core.log import logger

LOSSES = {'CrossEntropyLoss': 'ZooCrossEntropyLoss'}
MODELS = {'PSPNet': 'ZooPSPNet', 'DeepLabV3': 'ZooDeepLabV3'}
BACKBONES = {'ResNet50_vd': 'ZooResNet50_vd', 'ResNet101_vd': 'ZooResNet101_vd'}
# Arguments of PaddleSeg's class whose default differs from ours: filled in, so ours computes what it would.
UPSTREAM_DEFAULTS = {'DeepLabV3': {'aspp_ratios': [1, 6, 12, 18]}}
# Arguments of PaddleSeg's class that ours lacks: replaced only when the value is the only one ours computes.
ONLY_VALUE = {'ResNet50_vd': {'data_format': 'NCHW'}, 'ResNet101_vd': {'data_format': 'NCHW'}}
REASONS = {'loss': "PaddleSeg 2.8's fails on Paddle 3", 'model': 'same weights, faster'}


def substitute_upstream(dic, path):
    """Replace PaddleSeg built-ins in config ``dic`` (in place) by ours; log one INFO line if any.

    Args:
        dic (dict): The merged, overridden, validated config.
        path (str): Its file, for the log line.

    Returns:
        list[str]: ``'keypath Old -> New'`` for each replacement.
    """
    done = _substitute_model(dic.get('model'))
    if isinstance(dic.get('loss'), dict):
        done += _substitute_losses(dic['loss'], 'loss')
    if done:
        groups = {kind: [text for k, text in done if k == kind] for kind in REASONS}
        logger.info(f'{path}: PaddleSeg built-ins replaced: ' + '; '.join(
            f'{", ".join(texts)} ({REASONS[kind]})' for kind, texts in groups.items() if texts))
    return [text for _, text in done]


def _substitute_losses(node, keypath):
    """Rename every ``CrossEntropyLoss`` under ``node`` (loss types, and losses nested in them)."""
    done = []
    if isinstance(node, list):
        for index, item in enumerate(node):
            done += _substitute_losses(item, f'{keypath}.{index}')
    elif isinstance(node, dict):
        if node.get('type') in LOSSES:
            done.append(('loss', _rename(node, LOSSES, keypath)))
        for key, value in node.items():
            done += _substitute_losses(value, f'{keypath}.{key}')
    return done


def _substitute_model(model):
    """Rename the model and its backbone when both have ours and every argument fits ours."""
    if not isinstance(model, dict) or not isinstance(model.get('backbone'), dict):
        return []
    pairs = ((model, MODELS, 'model'), (model['backbone'], BACKBONES, 'model.backbone'))
    if not all(node.get('type') in table or node.get('type') in table.values() for node, table, _ in pairs):
        return []  # another model or backbone: PaddleSeg's classes (or ours) as named
    upstream = [(node, table, keypath) for node, table, keypath in pairs if node['type'] in table]
    if not all(_fits(node) for node, _, _ in upstream):
        return []
    return [('model', _rename(node, table, keypath)) for node, table, keypath in upstream]


def _fits(node):
    """Whether our class for ``node`` (PaddleSeg's ``type``) computes what PaddleSeg's would."""
    fixed = ONLY_VALUE.get(node['type'], {})
    return all(node[key] == value for key, value in fixed.items() if key in node)


def _rename(node, table, keypath):
    """Give ``node`` our type name (PaddleSeg's defaults made explicit); returns ``'keypath Old -> New'``."""
    old = node['type']
    for key, value in UPSTREAM_DEFAULTS.get(old, {}).items():
        node.setdefault(key, copy.deepcopy(value))
    for key in ONLY_VALUE.get(old, {}):
        node.pop(key, None)
    node['type'] = table[old]
    return f'{keypath} {old} -> {node["type"]}'
