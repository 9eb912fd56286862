"""Reading a PaddleSeg YAML config: one file, then the tree of ``_base_`` files merged as PaddleSeg merges.

Every problem becomes a one-line :class:`paddle_psp.core.errors.UserError` naming the file (and line).
"""
import os
import re

import yaml

from paddle_psp.core.errors import UserError

BASE_KEY = '_base_'
INHERIT_KEY = '_inherited_'


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` (no dot) as a float, as YAML 1.2 does."""


_YamlLoader.add_implicit_resolver(
    'tag:yaml.org,2002:float',
    re.compile(r'^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$'
               r'|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$'),
    list('-+0123456789.'))


def read_yaml_tree(path, _seen=()):
    """The dict of ``path`` merged over its ``_base_`` files, as PaddleSeg merges them.

    A key of the child replaces the base's value, except that dicts merge key by key unless the child's
    dict says ``_inherited_: False``. Of a list of ``_base_`` files, an earlier one wins over a later one
    (PaddleSeg merges the child over each base in turn).
    """
    dic = read_yaml_file(path)
    bases = dic.pop(BASE_KEY, None)
    if bases is None:
        return dic
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise UserError(f'{path}: {BASE_KEY}: expected a file name or a list of file names, got {bases!r}')
    for base in bases:
        base_path = os.path.join(os.path.dirname(path), base)
        if not os.path.isfile(base_path):
            raise UserError(f'{path}: {BASE_KEY}: {base} not found (looked for {os.path.normpath(base_path)})')
        if os.path.realpath(base_path) in _seen:
            raise UserError(f'{path}: {BASE_KEY}: {base} includes itself (a cycle of _base_ files)')
        base_dic = read_yaml_tree(base_path, _seen + (os.path.realpath(path),))
        dic = merge_dicts(dic, base_dic)
    return dic


def read_yaml_file(path):
    """One YAML file as a dict; a UserError naming the file (and line) when it cannot be."""
    if not os.path.exists(path):
        raise UserError(f'{path}: config file not found')
    if not os.path.isfile(path):
        raise UserError(f'{path}: is a directory; expected a .yml config file')
    if not path.endswith(('.yml', '.yaml')):
        raise UserError(f'{path}: not a YAML file; expected a .yml or .yaml config file')
    try:
        with open(path, encoding='utf-8') as file:
            dic = yaml.load(file, Loader=_YamlLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, 'problem_mark', None)
        where = f'{path}:{mark.line + 1}' if mark is not None else path
        problem = getattr(err, 'problem', None) or str(err).splitlines()[0]
        raise UserError(f'{where}: malformed YAML: {problem}') from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f'{path}: cannot read config file: {err}') from None
    if not isinstance(dic, dict):
        raise UserError(f'{path}: expected a YAML mapping (key: value lines) at the top level, '
                        f'got {type(dic).__name__}')
    return dic


def merge_dicts(dic, base):
    """``dic`` merged over ``base`` (neither is modified)."""
    dic = dict(dic)
    if not dic.get(INHERIT_KEY, True):
        dic.pop(INHERIT_KEY)
        return dic
    dic.pop(INHERIT_KEY, None)
    merged = dict(base)
    for key, value in dic.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_dicts(value, merged[key])
        else:
            merged[key] = value
    return merged
