"""Building a validated config's parts: :class:`SegConfig` builds the model, datasets, loss, LR schedule
and optimizer on first access, from PaddleSeg's registries, without PaddleSeg's asserts and config dumps.
PaddleSeg built-ins that fail on Paddle 3, or that ours replace with the same weights, are replaced first
(:mod:`paddle_psp.config.upstream`).

Constructor errors (PaddleSeg's asserts included) become one-line UserErrors naming the key.
"""
import copy
import functools

import paddle
import yaml

from paddle_psp.config.overrides import apply_repeats
from paddle_psp.config.registry import constructor_params, lookup_class, lr_scheduler_class, optimizer_type
from paddle_psp.config.upstream import substitute_upstream
from paddle_psp.config.validate import TRAIN_KEYS, check_dataset_root, check_file_list
from paddle_psp.core.errors import UserError, one_line
from paddle_psp.data.datasets import IGNORE_INDEX
from paddle_psp.weights.state_dict import load_weights


class SegConfig:
    """A validated config; ``model``, datasets, ``loss``, ``optimizer`` and ``lr_scheduler`` build on demand
    (once each).

    Attributes:
        dic (dict): The merged, overridden config (PaddleSeg layout), PaddleSeg built-ins replaced by ours.
        path (str): The YAML file it came from.
        substitutions (list[str]): ``'keypath Old -> New'`` for each built-in replaced (see
            :func:`paddle_psp.config.upstream.substitute_upstream`).
        repeats (int|None): ``--repeats``: passes over the training images per epoch (None: one).
    """

    def __init__(self, dic, path, repeats=None):
        self.dic = dic
        self.path = path
        self.repeats = repeats
        self.substitutions = substitute_upstream(dic, path)

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
    def _dataset_key(self):
        """The dataset section that defines classes: the training dataset, else the validation dataset."""
        return 'train_dataset' if 'train_dataset' in self.dic else 'val_dataset'

    @property
    def dataset_class(self):
        """The class of the training dataset (else the validation dataset)."""
        return lookup_class(self.section(self._dataset_key)['type'], self._dataset_key, self.path)

    @property
    def num_classes(self):
        """``model.num_classes``, else the dataset's (class ``NUM_CLASSES`` or its ``num_classes`` key)."""
        if 'num_classes' in self.dic['model']:
            return self.dic['model']['num_classes']
        key = self._dataset_key
        value = self.section(key).get('num_classes', getattr(self.dataset_class, 'NUM_CLASSES', None))
        if value is None:
            raise UserError(f'{self.path}: model.num_classes: missing and {key} does not define it')
        return value

    @property
    def ignore_index(self):
        """The dataset's ignore index (255 unless the dataset says otherwise)."""
        return self.section(self._dataset_key).get('ignore_index',
                                                   getattr(self.dataset_class, 'IGNORE_INDEX', IGNORE_INDEX))

    @property
    def val_transforms(self):
        """The validation transforms (list of PaddleSeg transform objects)."""
        items = self.section('val_dataset').get('transforms', [])
        return [build_component(item, f'val_dataset.transforms.{i}', self.path) for i, item in enumerate(items)]

    @functools.cached_property
    def model(self):
        """The segmentation model (``num_classes`` filled in from the dataset when absent), with the
        ``pretrained`` weights the config names (downloaded if needed)."""
        return self.build_model()

    def build_model(self, pretrained=True):
        """A new segmentation model; ``pretrained=False``: without the weights any ``pretrained`` key of the
        model section (the model's, the backbone's) names, for a checkpoint that replaces them (nothing is
        downloaded)."""
        return build_component(self.model_config(pretrained), 'model', self.path)

    def model_config(self, pretrained=True):
        """The component dict :meth:`build_model` builds: a copy of the model section with ``num_classes``
        filled in, and with every ``pretrained`` key None when ``pretrained`` is False."""
        model_cfg = copy.deepcopy(self.section('model'))
        model_cfg.setdefault('num_classes', self.num_classes)
        if not pretrained:
            _drop_pretrained(model_cfg)
        return model_cfg

    @functools.cached_property
    def train_dataset(self):
        """The training dataset (its file list repeated ``--repeats`` times); UserError if its files are missing or
        it is smaller than a batch."""
        dataset = self.build_dataset('train_dataset', self.section('train_dataset'))
        batch_size = self.dic.get('batch_size')
        if batch_size is not None and batch_size > len(dataset):
            raise UserError(f'{self.path}: batch_size: {batch_size} is larger than train_dataset '
                            f'({len(dataset)} images under {dataset.dataset_root}); expected at most '
                            f'{len(dataset)}')
        return apply_repeats(dataset, self.repeats)

    @functools.cached_property
    def val_dataset(self):
        """The validation dataset."""
        return self.build_dataset('val_dataset', self.section('val_dataset'))

    def build_dataset(self, key, dataset_cfg):
        """Build dataset section ``dataset_cfg`` (named ``key`` in messages) after checking its files."""
        check_dataset_root(dataset_cfg, key, self.path)
        dataset = build_component(dataset_cfg, key, self.path)
        if len(dataset) == 0:
            raise UserError(f'{self.path}: {key}: no {getattr(dataset, "mode", "")} images found under '
                            f'{dataset_cfg.get("dataset_root")}; expected a prepared dataset')
        check_file_list(dataset, key)
        return dataset

    @functools.cached_property
    def loss(self):
        """``{'types': [loss layers], 'coef': [floats]}``, ``ignore_index`` synchronised with the dataset."""
        loss_cfg = self.section('loss')
        types = []
        for index, item in enumerate(loss_cfg['types']):
            item = copy.deepcopy(item)
            keypath = f'loss.types.{index}'
            params = constructor_params(lookup_class(item['type'], keypath, self.path))
            if params and 'ignore_index' in params:
                item.setdefault('ignore_index', self.ignore_index)
                if item['ignore_index'] != self.ignore_index:
                    raise UserError(f'{self.path}: {keypath}.ignore_index: {item["ignore_index"]} differs from '
                                    f'the dataset\'s ignore index {self.ignore_index}; expected the same value')
            types.append(build_component(item, keypath, self.path))
        return {'types': types, 'coef': [float(c) for c in loss_cfg['coef']]}

    @functools.cached_property
    def lr_scheduler(self):
        """A ``paddle.optimizer.lr`` scheduler; PolynomialDecay's ``decay_steps`` defaults to ``iters``."""
        lr_cfg = copy.deepcopy(self.section('lr_scheduler'))
        scheduler_class = lr_scheduler_class(lr_cfg.pop('type'), self.path)
        warmup_iters = lr_cfg.pop('warmup_iters', 0)
        warmup_start_lr = lr_cfg.pop('warmup_start_lr', 0.0)
        if scheduler_class is paddle.optimizer.lr.PolynomialDecay:
            lr_cfg.setdefault('decay_steps', max(self.iters - warmup_iters, 1))
        scheduler = _construct(scheduler_class, lr_cfg, 'lr_scheduler', self.path)
        if warmup_iters:
            scheduler = paddle.optimizer.lr.LinearWarmup(scheduler, warmup_iters, warmup_start_lr,
                                                         lr_cfg['learning_rate'])
        return scheduler

    @functools.cached_property
    def optimizer(self):
        """The optimizer over ``self.model``'s parameters, driven by ``self.lr_scheduler``."""
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


def build_component(cfg, keypath, path):
    """Build the registered component described by dict ``cfg`` (nested components first).

    Constructor errors (PaddleSeg's asserts included) become one UserError naming ``keypath``. The
    ``pretrained`` weights of PaddleSeg's own classes are loaded by :func:`paddle_psp.weights.state_dict.load_weights`
    (the safe reader) after construction, never by PaddleSeg's loaders (``paddle.load``: unrestricted pickle).
    """
    cfg = dict(cfg)
    component_class = lookup_class(cfg.pop('type'), keypath, path)
    params = {}
    for key, value in cfg.items():
        if isinstance(value, dict) and 'type' in value:
            value = build_component(value, f'{keypath}.{key}', path)
        elif isinstance(value, list):
            value = [build_component(v, f'{keypath}.{key}.{i}', path) if isinstance(v, dict) and 'type' in v
                     else v for i, v in enumerate(value)]
        params[key] = value
    deferred = None
    if getattr(component_class, '__module__', '').startswith('paddleseg.') and params.get('pretrained'):
        deferred, params['pretrained'] = params['pretrained'], None  # PaddleSeg's loaders call paddle.load
    layer = _construct(component_class, params, keypath, path)
    if deferred:
        load_weights(layer, deferred)  # as PaddleSeg loads them (matching names and shapes), read safely
    return layer


def _drop_pretrained(node):
    """Set every ``pretrained`` key of component dict ``node`` and the components nested in it to None."""
    if isinstance(node, list):
        for item in node:
            _drop_pretrained(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == 'pretrained':
                node[key] = None
            else:
                _drop_pretrained(value)


def _construct(component_class, params, keypath, path):
    try:
        return component_class(**params)
    except UserError:
        raise
    except (TypeError, ValueError, AssertionError, KeyError, RuntimeError, OSError) as err:
        name = getattr(component_class, '__name__', str(component_class))
        raise UserError(f'{path}: {keypath}: cannot create {name}: '
                        f'{one_line(err, limit=300, last_line=True)}') from None
