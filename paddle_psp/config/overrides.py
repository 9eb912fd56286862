"""Command-line changes to a read config, applied before it is validated: ``--learning_rate``/``--batch_size``/
``--iters``, ``--opts``, ``--data_format`` and ``--repeats``.

``--opts key.sub=value`` may only name keys the config has, list indices it has, or (see :data:`CREATABLE`
and component constructors) keys it may gain; anything else is a UserError with close matches.
"""
import ast

import yaml

from paddle_psp.config.registry import close_matches, component_class, constructor_params, lookup_class
from paddle_psp.core.errors import UserError

# Keys --opts may create although the config does not have them yet.
CREATABLE = {'': {'batch_size', 'iters', 'to_static_training', 'test_config'},
             'test_config': {'is_slide', 'crop_size', 'stride', 'aug_eval', 'scales', 'flip_horizontal',
                             'flip_vertical'}}


def apply_overrides(dic, path, learning_rate=None, batch_size=None, iters=None):
    """Apply the command-line ``--learning_rate``, ``--batch_size`` and ``--iters`` to ``dic`` in place."""
    if learning_rate is not None:
        if not isinstance(dic.get('lr_scheduler'), dict):
            raise UserError(f'{path}: --learning_rate given but the config has no lr_scheduler section')
        dic['lr_scheduler']['learning_rate'] = float(learning_rate)
    if batch_size is not None:
        dic['batch_size'] = batch_size
    if iters is not None:
        dic['iters'] = iters


def apply_data_format(dic, path, data_format):
    """``--data_format NHWC``: pass ``data_format`` to the model, its backbone and every loss in ``dic`` in
    place, as PaddleSeg's tools/train.py does; a UserError for a component that does not take it. Sections
    that are missing are left for validation to report."""
    if data_format in (None, 'NCHW'):
        return
    model = dic.get('model') if isinstance(dic.get('model'), dict) else {}
    backbone = model.get('backbone') if isinstance(model.get('backbone'), dict) else {}
    losses = (dic.get('loss') or {}).get('types') if isinstance(dic.get('loss'), dict) else None
    sections = [('model', model), ('model.backbone', backbone)]
    sections += [(f'loss.types.{i}', item) for i, item in enumerate(losses if isinstance(losses, list) else [])]
    for keypath, section in sections:
        if not isinstance(section, dict) or 'type' not in section:
            continue
        params = constructor_params(lookup_class(section.get('type'), keypath, path))
        if params is not None and 'data_format' not in params:
            raise UserError(f'--data_format {data_format}: {keypath}: {section.get("type")} takes no data_format; '
                            'expected --data_format NCHW')
        section['data_format'] = data_format


def check_repeats(repeats):
    """``--repeats``: at least 1 (None: the flag was not given); a UserError otherwise."""
    if repeats is not None and repeats < 1:
        raise UserError(f'--repeats: expected a positive integer, got {repeats}')


def apply_repeats(dataset, repeats):
    """``--repeats N`` on the built training ``dataset`` (in place, and returned): every epoch passes over its
    images N times, as PaddleSeg's tools/train.py does, by repeating the file list."""
    if repeats is not None and repeats > 1:
        dataset.file_list = dataset.file_list * repeats
    return dataset


def apply_opts(dic, path, opts):
    """Apply ``key.sub=value`` items to ``dic`` in place; an unknown key is a UserError naming it."""
    for item in opts:
        key, sep, text = item.partition('=')
        if not sep or not key:
            raise UserError(f'--opts {item}: expected key.sub=value, e.g. train_dataset.dataset_root=data/x')
        parent, leaf = walk_to_parent(dic, key, path)
        value = parse_value(text)
        if isinstance(parent, list):
            parent[int(leaf)] = value
        else:
            parent[leaf] = value


def walk_to_parent(dic, key, path):
    """The container holding the last part of dotted ``key`` and that part; UserError if a part is unknown."""
    parts = key.split('.')
    node, done = dic, []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if isinstance(node, list):
            if not (part.isdigit() and int(part) < len(node)):
                raise UserError(f'--opts {key}: {".".join(done) or "<top>"} is a list of {len(node)} items; '
                                f'expected an index 0..{len(node) - 1}, got {part!r}')
            if last:
                return node, part
            node = node[int(part)]
        elif isinstance(node, dict):
            if last and (part in node or _may_create(node, done, part, path)):
                return node, part
            if part not in node:
                choices = sorted(map(str, node))
                hint = close_matches(part, choices, 3)
                raise UserError(f'--opts {key}: unknown key {".".join(done + [part])!r} in {path}; '
                                + (f'did you mean {", ".join(hint)}?' if hint else
                                   f'expected one of {", ".join(choices)}'))
            node = node[part]
        else:
            raise UserError(f'--opts {key}: {".".join(done)} is a value ({node!r}), not a section')
        done.append(part)
    raise AssertionError('unreachable')


def _may_create(node, done, part, path):
    """Whether --opts may add key ``part`` to ``node`` (at key path ``done``)."""
    keypath = '.'.join(done)
    if part in CREATABLE.get(keypath, ()):
        return True
    if 'type' in node:  # a component: any argument of its constructor
        params = constructor_params(component_class(node, keypath, path))
        return params is None or part in params
    return False


def parse_value(text):
    """An --opts value: a Python literal (1, 0.5, [64, 64], None, 'x'), else YAML (true, null), else text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text
