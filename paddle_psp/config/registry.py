"""Which class a config's ``type`` names: PaddleSeg's registries (``import paddle_psp`` adds ours) by the
key path of the section, ``paddle.optimizer.lr`` for ``lr_scheduler``; unknown names give close matches.
"""
import functools
import inspect

import paddle
from paddleseg.cvlibs import manager

import paddle_psp.models  # noqa: F401  (our models, backbones and loss, registered)
from paddle_psp.core.errors import UserError
from paddle_psp.core.errors import close_matches  # noqa: F401  (re-exported: validate, overrides)

OPTIMIZER_ALIASES = {'sgd': 'SGD', 'adam': 'Adam'}


def component_class(node, keypath, path):
    """The class component dict ``node`` at ``keypath`` builds (PaddleSeg's optimizer renaming applied)."""
    if keypath == 'lr_scheduler':
        return lr_scheduler_class(node['type'], path)
    if keypath == 'optimizer':
        return lookup_class(optimizer_type(node), keypath, path)
    return lookup_class(node['type'], keypath, path)


def optimizer_type(opt_cfg):
    """The registered optimizer an optimizer section means: 'sgd' is SGD, SGD with momentum is Momentum."""
    name = OPTIMIZER_ALIASES.get(opt_cfg['type'], opt_cfg['type'])
    return 'Momentum' if name == 'SGD' and 'momentum' in opt_cfg else name


def lookup_class(type_name, keypath, path):
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


def lr_scheduler_class(type_name, path):
    """The ``paddle.optimizer.lr`` scheduler class named ``type_name``; UserError with close matches."""
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


def _some(names, limit=8):
    return ', '.join(names[:limit]) + (', ...' if len(names) > limit else '')
