"""Reading a PaddleSeg YAML config: one file, then the tree of ``_base_`` files merged as PaddleSeg merges.

Every problem becomes a one-line :class:`paddle_psp.core.errors.UserError` naming the file (and line).
Hostile files are bounded before they cost time or memory: the file size, the nesting depth and the number
of nodes after aliases are expanded (a few anchors referring to each other can stand for billions).
"""
import math
import os
import re

import yaml

from paddle_psp.core.errors import UserError

BASE_KEY = '_base_'
INHERIT_KEY = '_inherited_'
MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 50
MAX_NODES = 100_000


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` (no dot) as a float, as YAML 1.2 does, and refuses documents
    nested deeper than ``MAX_DEPTH`` or expanding (through aliases) to more than ``MAX_NODES`` nodes."""

    def compose_node(self, parent, index):
        depth = getattr(self, '_depth', 0)
        if depth >= MAX_DEPTH:
            raise TooLarge(f'nested more than {MAX_DEPTH} levels deep')
        self._depth = depth + 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth = depth

    def compose_document(self):
        node = super().compose_document()
        nodes, depth = expanded_shape(node)
        if nodes > MAX_NODES or depth > MAX_DEPTH:
            raise TooLarge('its aliases expand too far'
                           if nodes < math.inf else 'an alias refers to a node that contains it')
        return node


class TooLarge(yaml.YAMLError):
    """A YAML document nested or expanding beyond the bounds of a config."""


_YamlLoader.add_implicit_resolver(
    'tag:yaml.org,2002:float',
    re.compile(r'^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$'
               r'|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$'),
    list('-+0123456789.'))


def expanded_shape(root):
    """(nodes, depth) of YAML node ``root`` with every alias expanded, computed without expanding anything
    (and without recursion, as aliases can chain deeper than Python's stack); (inf, inf) when an alias
    refers to a node containing it."""
    shape, stack = {}, [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = (node.value if isinstance(node, yaml.SequenceNode) else
                    [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
        if children_done:
            shape[id(node)] = (1 + sum(shape[id(c)][0] for c in children),
                               1 + max((shape[id(c)][1] for c in children), default=0))
        elif id(node) not in shape:
            shape[id(node)] = None  # on the current path
            stack.append((node, True))
            for child in children:
                if id(child) in shape and shape[id(child)] is None:
                    return math.inf, math.inf
                if id(child) not in shape:
                    stack.append((child, False))
    return shape[id(root)]


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
    if os.path.getsize(path) > MAX_FILE_BYTES:
        raise UserError(f'{path}: {os.path.getsize(path)} bytes; expected a config of at most {MAX_FILE_BYTES} bytes')
    try:
        with open(path, encoding='utf-8') as file:
            dic = yaml.load(file, Loader=_YamlLoader)
    except TooLarge as err:
        raise UserError(f'{path}: {err}; expected a config of at most {MAX_DEPTH} levels and {MAX_NODES} values') \
            from None
    except yaml.YAMLError as err:
        mark = getattr(err, 'problem_mark', None)
        where = f'{path}:{mark.line + 1}' if mark is not None else path
        problem = getattr(err, 'problem', None) or str(err).splitlines()[0]
        tag = re.search(r"constructor for the tag '([^']*)'", problem)
        if tag:  # e.g. !!python/object/apply:os.system: a config is data, never code
            raise UserError(f'{where}: YAML tag {tag.group(1)!r} refused; expected plain YAML values (mappings, '
                            'lists, strings, numbers, booleans, null): a config never constructs Python objects') \
                from None
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
