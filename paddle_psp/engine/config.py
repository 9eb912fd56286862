"""Read a PaddleSeg YAML config (``_base_`` inheritance, overrides, ``--opts``), validate it, build its parts.

Every problem a user can cause becomes a one-line :class:`paddle_psp.core.errors.UserError` naming the file and
key: a missing or malformed file, an unknown ``type`` (with close matches), an unknown ``--opts`` key, a
missing dataset root (with the command that prepares it), a batch size larger than the dataset. Components
come from PaddleSeg's registry (``import paddle_psp`` adds ours), built without PaddleSeg's asserts and
config dumps.

Example:
    cfg = load_config('configs/cityscapes/pspnet_resnet50_os8_cityscapes_1024x512_80k.yml',
                      opts=['train_dataset.dataset_root=data/cityscapes'], iters=1000)
    model, optimizer = cfg.model, cfg.optimizer
"""
import ast
import copy
import difflib
import functools
import inspect
import os
import re

import paddle
import yaml
from paddleseg.cvlibs import manager

import paddle_psp  # noqa: F401  (registers our models, backbones and loss)
from paddle_psp.core.errors import UserError, one_line
from paddle_psp.core.log import logger
from paddle_psp.data.datasets import IGNORE_INDEX, PREPARED_LAYOUTS, dataset_kind, unpaired_cityscapes_frame

BASE_KEY = '_base_'
INHERIT_KEY = '_inherited_'
TRAIN_KEYS = ('batch_size', 'iters', 'model', 'train_dataset', 'optimizer', 'lr_scheduler', 'loss')
KNOWN_TOP_LEVEL = set(TRAIN_KEYS) | {'val_dataset', 'test_config', 'export', 'distill_loss', 'to_static_training'}
# Keys --opts may create although the config does not have them yet.
CREATABLE = {'': {'batch_size', 'iters', 'to_static_training', 'test_config'},
             'test_config': {'is_slide', 'crop_size', 'stride', 'aug_eval', 'scales', 'flip_horizontal',
                             'flip_vertical'}}
OPTIMIZER_ALIASES = {'sgd': 'SGD', 'adam': 'Adam'}


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` (no dot) as a float, as YAML 1.2 does."""


_YamlLoader.add_implicit_resolver(
    'tag:yaml.org,2002:float',
    re.compile(r'^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$'
               r'|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$'),
    list('-+0123456789.'))


def load_config(path, opts=None, learning_rate=None, batch_size=None, iters=None):
    """Read, merge, override and validate the config at ``path``.

    Args:
        path (str): A ``.yml``/``.yaml`` file; ``_base_`` files are relative to the file naming them.
        opts (list[str], optional): ``key.sub=value`` overrides (list items by index: ``a.transforms.0.x=1``);
            values are Python/YAML literals. An unknown key is an error. Default: None.
        learning_rate (float, optional): Overrides ``lr_scheduler.learning_rate``. Default: None.
        batch_size (int, optional): Overrides ``batch_size`` (per device). Default: None.
        iters (int, optional): Overrides ``iters``. Default: None.

    Returns:
        SegConfig: The validated config; components are built on first access.

    Raises:
        UserError: One line naming the file or key that is wrong.
    """
    path = os.fspath(path)
    dic = read_yaml_tree(path)
    apply_overrides(dic, path, learning_rate=learning_rate, batch_size=batch_size, iters=iters)
    apply_opts(dic, path, opts or [])
    validate(dic, path)
    return SegConfig(dic, path)


def add_config_arguments(parser, config_help):
    """Add ``--config`` (help ``config_help``) and ``--model_path`` to an argparse ``parser``, both required."""
    parser.add_argument('--config', required=True, help=config_help)
    parser.add_argument('--model_path', required=True,
                        help='checkpoint: a model.pdparams file, a folder holding one, a URL or a zoo name')


def build_val_dataset(cfg, data_root=None):
    """The validation dataset of ``cfg``, optionally read from another ``dataset_root``.

    Args:
        cfg (SegConfig): A loaded config.
        data_root (str, optional): Replaces ``val_dataset.dataset_root``. Default: None.

    Returns:
        paddle.io.Dataset: PaddleSeg dataset in ``val`` mode.
    """
    if data_root is None:
        return cfg.val_dataset
    dataset_cfg = copy.deepcopy(cfg.section('val_dataset'))
    dataset_cfg['dataset_root'] = data_root
    return cfg.build_dataset('val_dataset', dataset_cfg)


# ----------------------------------------------------------------------------------------------- reading
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


# ------------------------------------------------------------------------------------------- overriding
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
        params = constructor_params(_component_class(node, keypath, path))
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


# ------------------------------------------------------------------------------------------- validating
def validate(dic, path):
    """Check ``dic`` without building anything heavy: numbers, every ``type``, constructor arguments, loss."""
    if not isinstance(dic.get('model'), dict):
        raise UserError(f'{path}: model: missing; expected a model section with a type')
    for key in ('batch_size', 'iters'):
        if key in dic and not (isinstance(dic[key], int) and not isinstance(dic[key], bool) and dic[key] > 0):
            raise UserError(f'{path}: {key}: expected a positive integer, got {dic[key]!r}')
    for key in ('model', 'train_dataset', 'val_dataset', 'optimizer', 'lr_scheduler', 'loss'):
        if key in dic and not isinstance(dic[key], dict):
            raise UserError(f'{path}: {key}: expected a section (key: value lines), got {dic[key]!r}')
        if key in dic and key != 'loss' and 'type' not in dic[key]:
            raise UserError(f'{path}: {key}.type: missing; expected the name of a registered component')
    for key in sorted(set(dic) - KNOWN_TOP_LEVEL):
        logger.warning(f'{path}: {key}: not a key PaddleSeg configs use; ignored')
    check_types(dic, path)
    check_loss(dic, path)


def check_types(node, path, keypath=''):
    """Every ``type`` names a registered component and every sibling key is one of its arguments."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            check_types(item, path, f'{keypath}.{index}')
        return
    if not isinstance(node, dict):
        return
    if 'type' in node:
        params = constructor_params(_component_class(node, keypath, path))
        ignored = {'type', 'warmup_iters', 'warmup_start_lr'} if keypath == 'lr_scheduler' else {'type'}
        for key in node:
            if params is not None and key not in params and key not in ignored:
                hint = close_matches(key, sorted(params), 3)
                raise UserError(f'{path}: {keypath}.{key}: not an argument of {node["type"]}; '
                                + (f'did you mean {", ".join(hint)}?' if hint else
                                   f'expected one of {", ".join(sorted(params))}'))
    for key, value in node.items():
        check_types(value, path, f'{keypath}.{key}' if keypath else str(key))


def check_loss(dic, path):
    """``loss.types`` has one entry or one per ``coef``; a single type is repeated (PaddleSeg's rule)."""
    loss = dic.get('loss')
    if loss is None:
        return
    types, coef = loss.get('types'), loss.get('coef')
    if not isinstance(types, list) or not types or not all(isinstance(t, dict) for t in types):
        raise UserError(f'{path}: loss.types: expected a list of losses (each with a type), got {types!r}')
    if not isinstance(coef, list) or not all(isinstance(c, (int, float)) for c in coef):
        raise UserError(f'{path}: loss.coef: expected a list of numbers (one per model output), got {coef!r}')
    if len(types) == 1 and len(coef) > 1:
        loss['types'] = [copy.deepcopy(types[0]) for _ in coef]
    elif len(types) != len(coef):
        raise UserError(f'{path}: loss: {len(types)} types but {len(coef)} coef; expected one type or '
                        'one per coef')


def _component_class(node, keypath, path):
    """The class component dict ``node`` at ``keypath`` builds (PaddleSeg's optimizer renaming applied)."""
    if keypath == 'lr_scheduler':
        return _lr_scheduler_class(node['type'], path)
    if keypath == 'optimizer':
        return _lookup_class(optimizer_type(node), keypath, path)
    return _lookup_class(node['type'], keypath, path)


def optimizer_type(opt_cfg):
    """The registered optimizer an optimizer section means: 'sgd' is SGD, SGD with momentum is Momentum."""
    name = OPTIMIZER_ALIASES.get(opt_cfg['type'], opt_cfg['type'])
    return 'Momentum' if name == 'SGD' and 'momentum' in opt_cfg else name


def _lookup_class(type_name, keypath, path):
    """The registered class for ``type_name`` at ``keypath``; UserError with close matches if unknown."""
    registries = _registries_for(keypath)
    for registry in registries:
        if isinstance(type_name, str) and type_name in registry.components_dict:
            return registry.components_dict[type_name]
    names = sorted({name for registry in registries for name in registry.components_dict})
    hint = close_matches(type_name, names)
    kind = ' or '.join(r._name for r in registries) if len(registries) < 3 else 'components'
    suggestion = f'did you mean {", ".join(hint)}?' if hint else f'expected one of {_some(names)}'
    raise UserError(f'{path}: {keypath}.type: unknown type {type_name!r} (not among the {kind}); {suggestion}')


def _registries_for(keypath):
    """The registries a component at ``keypath`` may come from."""
    last = keypath.split('.')[-2:] if '.' in keypath else [keypath]
    if keypath == 'model':
        return [manager.MODELS]
    if keypath.endswith('backbone'):
        return [manager.BACKBONES]
    if keypath == 'optimizer':
        return [manager.OPTIMIZERS]
    if keypath.endswith('_dataset'):
        return [manager.DATASETS]
    if last[0] == 'transforms':
        return [manager.TRANSFORMS]
    if last[0] in ('types', 'losses'):
        return [manager.LOSSES]
    return [manager.MODELS, manager.BACKBONES, manager.LOSSES, manager.TRANSFORMS, manager.DATASETS]


def _lr_scheduler_class(type_name, path):
    names = sorted(n for n, c in vars(paddle.optimizer.lr).items()
                   if inspect.isclass(c) and issubclass(c, paddle.optimizer.lr.LRScheduler))
    if type_name not in names:
        hint = close_matches(type_name, names)
        raise UserError(f'{path}: lr_scheduler.type: unknown type {type_name!r} (not in paddle.optimizer.lr); '
                        + (f'did you mean {", ".join(hint)}?' if hint else f'expected one of {_some(names)}'))
    return getattr(paddle.optimizer.lr, type_name)


@functools.lru_cache(maxsize=None)
def constructor_params(cls):
    """Names of the keyword arguments ``cls`` accepts, or None when it takes ``**kwargs``."""
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return None
    return frozenset(signature.parameters)


def close_matches(name, names, limit=4):
    """Up to ``limit`` of ``names`` that look like ``name``: containing it (case-insensitively), then similar."""
    name = str(name)
    containing = [n for n in names if len(name) >= 3 and name.lower() in n.lower()]
    similar = difflib.get_close_matches(name, names, n=limit, cutoff=0.5)
    return list(dict.fromkeys(similar + containing))[:limit]


def _some(names, limit=8):
    return ', '.join(names[:limit]) + (', ...' if len(names) > limit else '')


# ---------------------------------------------------------------------------------------------- building
class SegConfig:
    """A validated config; ``model``, datasets, ``loss``, ``optimizer`` and ``lr_scheduler`` build on demand.

    Attributes:
        dic (dict): The merged, overridden config (PaddleSeg layout).
        path (str): The YAML file it came from.
    """

    def __init__(self, dic, path):
        self.dic = dic
        self.path = path
        self._built = {}

    def __str__(self):
        return yaml.safe_dump(self.dic, sort_keys=False)

    @property
    def batch_size(self):
        """Images per device and iteration."""
        return self.section('batch_size')

    @property
    def iters(self):
        """Total training iterations."""
        return self.section('iters')

    @property
    def test_config(self):
        """The ``test_config`` section (TTA / sliding-window settings), possibly empty."""
        return dict(self.dic.get('test_config') or {})

    def section(self, key):
        """``dic[key]``; a UserError naming the file when the config lacks it."""
        if key not in self.dic:
            raise UserError(f'{self.path}: {key}: missing; this command needs it in the config')
        return self.dic[key]

    def check_training(self):
        """Raise a UserError unless every section training needs is present."""
        for key in TRAIN_KEYS:
            self.section(key)

    @property
    def dataset_class(self):
        """The class of the training dataset (else the validation dataset)."""
        key = 'train_dataset' if 'train_dataset' in self.dic else 'val_dataset'
        return _lookup_class(self.section(key)['type'], key, self.path)

    @property
    def num_classes(self):
        """``model.num_classes``, else the dataset's (class ``NUM_CLASSES`` or its ``num_classes`` key)."""
        if 'num_classes' in self.dic['model']:
            return self.dic['model']['num_classes']
        key = 'train_dataset' if 'train_dataset' in self.dic else 'val_dataset'
        value = self.section(key).get('num_classes', getattr(self.dataset_class, 'NUM_CLASSES', None))
        if value is None:
            raise UserError(f'{self.path}: model.num_classes: missing and {key} does not define it')
        return value

    @property
    def ignore_index(self):
        """The dataset's ignore index (255 unless the dataset says otherwise)."""
        key = 'train_dataset' if 'train_dataset' in self.dic else 'val_dataset'
        return self.section(key).get('ignore_index', getattr(self.dataset_class, 'IGNORE_INDEX', IGNORE_INDEX))

    @property
    def model(self):
        """The segmentation model (``num_classes`` filled in from the dataset when absent)."""
        return self._cached('model', self._build_model)

    @property
    def train_dataset(self):
        """The training dataset; UserError if its files are missing or it is smaller than a batch."""
        return self._cached('train_dataset', self._build_train_dataset)

    @property
    def val_dataset(self):
        """The validation dataset."""
        return self._cached('val_dataset', lambda: self.build_dataset('val_dataset', self.section('val_dataset')))

    @property
    def val_transforms(self):
        """The validation transforms (list of PaddleSeg transform objects)."""
        items = self.section('val_dataset').get('transforms', [])
        return [build_component(item, f'val_dataset.transforms.{i}', self.path) for i, item in enumerate(items)]

    @property
    def loss(self):
        """``{'types': [loss layers], 'coef': [floats]}``, ``ignore_index`` synchronised with the dataset."""
        return self._cached('loss', self._build_loss)

    @property
    def lr_scheduler(self):
        """A ``paddle.optimizer.lr`` scheduler; PolynomialDecay's ``decay_steps`` defaults to ``iters``."""
        return self._cached('lr_scheduler', self._build_lr_scheduler)

    @property
    def optimizer(self):
        """The optimizer over ``self.model``'s parameters, driven by ``self.lr_scheduler``."""
        return self._cached('optimizer', self._build_optimizer)

    def _cached(self, name, build):
        if name not in self._built:
            self._built[name] = build()
        return self._built[name]

    def _build_model(self):
        model_cfg = copy.deepcopy(self.section('model'))
        model_cfg.setdefault('num_classes', self.num_classes)
        return build_component(model_cfg, 'model', self.path)

    def _build_train_dataset(self):
        dataset = self.build_dataset('train_dataset', self.section('train_dataset'))
        batch_size = self.dic.get('batch_size')
        if batch_size is not None and batch_size > len(dataset):
            raise UserError(f'{self.path}: batch_size: {batch_size} is larger than train_dataset '
                            f'({len(dataset)} images under {dataset.dataset_root}); expected at most '
                            f'{len(dataset)}')
        return dataset

    def build_dataset(self, key, dataset_cfg):
        """Build dataset section ``dataset_cfg`` (named ``key`` in messages) after checking its files."""
        check_dataset_root(dataset_cfg, key, self.path)
        dataset = build_component(dataset_cfg, key, self.path)
        if len(dataset) == 0:
            raise UserError(f'{self.path}: {key}: no {getattr(dataset, "mode", "")} images found under '
                            f'{dataset_cfg.get("dataset_root")}; expected a prepared dataset')
        check_file_list(dataset, key)
        return dataset

    def _build_loss(self):
        loss_cfg = self.section('loss')
        types = []
        for index, item in enumerate(loss_cfg['types']):
            item = copy.deepcopy(item)
            keypath = f'loss.types.{index}'
            params = constructor_params(_lookup_class(item['type'], keypath, self.path))
            if params and 'ignore_index' in params:
                item.setdefault('ignore_index', self.ignore_index)
                if item['ignore_index'] != self.ignore_index:
                    raise UserError(f'{self.path}: {keypath}.ignore_index: {item["ignore_index"]} differs from '
                                    f'the dataset\'s ignore index {self.ignore_index}; expected the same value')
            types.append(build_component(item, keypath, self.path))
        return {'types': types, 'coef': [float(c) for c in loss_cfg['coef']]}

    def _build_lr_scheduler(self):
        lr_cfg = copy.deepcopy(self.section('lr_scheduler'))
        scheduler_class = _lr_scheduler_class(lr_cfg.pop('type'), self.path)
        warmup_iters = lr_cfg.pop('warmup_iters', 0)
        warmup_start_lr = lr_cfg.pop('warmup_start_lr', 0.0)
        if scheduler_class is paddle.optimizer.lr.PolynomialDecay:
            lr_cfg.setdefault('decay_steps', max(self.iters - warmup_iters, 1))
        scheduler = _construct(scheduler_class, lr_cfg, 'lr_scheduler', self.path)
        if warmup_iters:
            scheduler = paddle.optimizer.lr.LinearWarmup(scheduler, warmup_iters, warmup_start_lr,
                                                         lr_cfg['learning_rate'])
        return scheduler

    def _build_optimizer(self):
        opt_cfg = copy.deepcopy(self.section('optimizer'))
        opt_cfg['type'] = optimizer_type(opt_cfg)
        if isinstance(opt_cfg.get('weight_decay'), int):
            opt_cfg['weight_decay'] = float(opt_cfg['weight_decay'])
        factory = build_component(opt_cfg, 'optimizer', self.path)
        try:
            return factory(self.model, self.lr_scheduler)
        except (TypeError, ValueError, AssertionError, RuntimeError) as err:
            raise UserError(f'{self.path}: optimizer: cannot create {opt_cfg["type"]}: '
                            f'{one_line(err, limit=300, last_line=True)}') from None


def build_component(cfg, keypath, path):
    """Build the registered component described by dict ``cfg`` (nested components first).

    Constructor errors (PaddleSeg's asserts included) become one UserError naming ``keypath``.
    """
    cfg = dict(cfg)
    component_class = _lookup_class(cfg.pop('type'), keypath, path)
    params = {}
    for key, value in cfg.items():
        if isinstance(value, dict) and 'type' in value:
            value = build_component(value, f'{keypath}.{key}', path)
        elif isinstance(value, list):
            value = [build_component(v, f'{keypath}.{key}.{i}', path) if isinstance(v, dict) and 'type' in v
                     else v for i, v in enumerate(value)]
        params[key] = value
    return _construct(component_class, params, keypath, path)


def _construct(component_class, params, keypath, path):
    try:
        return component_class(**params)
    except UserError:
        raise
    except (TypeError, ValueError, AssertionError, KeyError, RuntimeError, OSError) as err:
        name = getattr(component_class, '__name__', str(component_class))
        raise UserError(f'{path}: {keypath}: cannot create {name}: '
                        f'{one_line(err, limit=300, last_line=True)}') from None


def check_dataset_root(dataset_cfg, key, path):
    """A UserError saying how to prepare the dataset when ``dataset_root`` lacks it (before PaddleSeg,
    whose PascalVOC would start a download)."""
    root = dataset_cfg.get('dataset_root')
    folders, command = PREPARED_LAYOUTS.get(dataset_cfg.get('type'), ((), 'paddleseg prepare --help'))
    if root is None:
        raise UserError(f'{path}: {key}.dataset_root: missing; expected the dataset folder')
    missing = [f for f in folders if not os.path.isdir(os.path.join(root, f))]
    if not os.path.isdir(root) or missing:
        what = 'does not exist' if not os.path.isdir(root) else f'has no {missing[0]}/ folder'
        raise UserError(f'{path}: {key}.dataset_root: {root} {what}; prepare the dataset with '
                        f'`{command.format(root=root)}` or set --opts {key}.dataset_root=DIR')


def check_file_list(dataset, key):
    """Every listed image and label exists, and (Cityscapes) every image has its label and vice versa."""
    if dataset_kind(dataset) == 'Cityscapes':
        check_cityscapes_pairs(dataset.dataset_root, dataset.mode, key)
    for image_path, label_path in getattr(dataset, 'file_list', []):
        for file_path in (image_path, label_path):
            if file_path is not None and not os.path.isfile(file_path):
                raise UserError(f'{file_path}: listed in {key} but missing; expected the image/label file')


def check_cityscapes_pairs(root, mode, key):
    """PaddleSeg pairs sorted image and label lists blindly; name the first file without its partner."""
    unpaired = unpaired_cityscapes_frame(root, mode)
    if unpaired is not None:
        present, lacks, missing = unpaired
        raise UserError(f'{present}: has no {lacks} in {key} ({missing} is missing); expected '
                        'one *_gtFine_labelTrainIds.png per *_leftImg8bit.png')

