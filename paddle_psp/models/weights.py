"""Load a ``.pdparams`` state dict into a layer, reporting exactly what was and was not loaded."""
import os

import numpy as np
import paddle

from paddle_psp.errors import UserError
from paddle_psp.log import logger


def read_state_dict(path):
    """Read a Paddle state dict from ``path``; a UserError naming the file if it is not one."""
    if not os.path.isfile(path):
        raise UserError(f'{path}: no such checkpoint file; expected a .pdparams file')
    try:
        state = paddle.load(path)
    except Exception as err:  # paddle raises many types for a foreign file
        raise UserError(f'{path}: not a Paddle state dict (.pdparams): {_one_line(err)}') from None
    if not isinstance(state, dict) or not state or not all(
            isinstance(v, (paddle.Tensor, np.ndarray)) for v in state.values()):
        raise UserError(f'{path}: not a Paddle state dict (.pdparams): expected a dict of tensors')
    return state


def resolve(spec):
    """A local ``.pdparams`` path for ``spec``: a file, a directory holding model.pdparams, a URL or zoo name."""
    spec = os.fspath(spec)
    if os.path.isdir(spec):
        return os.path.join(spec, 'model.pdparams')
    if os.path.exists(spec):
        return spec
    from paddle_psp import hub  # downloads only when needed
    return hub.resolve(spec)


def load_weights(layer, spec, strict=False):
    """Copy the tensors of checkpoint ``spec`` into ``layer`` where names and shapes agree.

    Each tensor whose shape differs is skipped with one line naming the key and both shapes; then one
    summary line ``loaded n/N tensors``.

    Args:
        layer (paddle.nn.Layer): The model or backbone.
        spec (str): A local path, directory, URL or zoo name (see :func:`resolve`).
        strict (bool, optional): Raise a UserError unless every tensor of ``layer`` was loaded (weights of
            another model). Default: False.

    Returns:
        dict: ``loaded``, ``missing``, ``unexpected`` and ``mismatched`` key lists.
    """
    path = resolve(spec)
    state = read_state_dict(path)
    own = layer.state_dict()
    loadable, mismatched = {}, []
    for key, tensor in own.items():
        if key not in state:
            continue
        shape = list(state[key].shape)
        if shape != list(tensor.shape):
            mismatched.append(key)
            logger.warning(f'skip {key}: checkpoint shape {shape}, model shape {list(tensor.shape)}')
        else:
            loadable[key] = state[key]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if strict and (missing or mismatched):
        first = (mismatched + missing)[:3]
        raise UserError(f'{path}: weights of another model: {len(missing)} tensors missing and '
                        f'{len(mismatched)} of another shape, first: {", ".join(first)}')
    layer.set_state_dict(loadable)
    logger.info(f'loaded {len(loadable)}/{len(own)} tensors from {path}'
                + (f' ({len(unexpected)} unexpected keys ignored)' if unexpected else ''))
    return {'loaded': list(loadable), 'missing': missing, 'unexpected': unexpected, 'mismatched': mismatched}


def _one_line(err):
    return ' '.join(str(err).split())[:200] or type(err).__name__
