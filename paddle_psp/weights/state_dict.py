"""Load a weights file into a layer, reporting exactly what was and was not loaded; random weights that give
non-degenerate logits, for benchmarks and tests.

Weights files are named by a spec (a file, a folder, a URL or a zoo name) that :func:`paddle_psp.weights.hub.resolve`
turns into a local file; this module sits above the hub and the hub never imports it.
"""
import numpy as np
import paddle

from paddle_psp.core.errors import UserError
from paddle_psp.core.log import logger
from paddle_psp.weights import hub
from paddle_psp.weights.pdparams import read_state_dict


def load_weights(layer, spec, strict=False):
    """Copy the tensors of the weights file ``spec`` into ``layer`` where names and shapes agree.

    Each tensor whose shape differs is skipped with one line naming the key and both shapes; then one
    summary line ``loaded n/N tensors``.

    Args:
        layer (paddle.nn.Layer): The model or backbone.
        spec (str): A local file, a directory holding model.pdparams, a URL or a zoo name
            (see :func:`paddle_psp.weights.hub.resolve`).
        strict (bool, optional): Raise a UserError unless every tensor of ``layer`` was loaded (weights of
            another model). Default: False.

    Returns:
        dict: ``loaded``, ``missing``, ``unexpected`` and ``mismatched`` key lists.
    """
    path = hub.resolve(spec)
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
    for key, value in loadable.items():  # tensor by tensor: set_state_dict warns about every absent key
        own[key].set_value(value)
    logger.info(f'loaded {len(loadable)}/{len(own)} tensors from {path}'
                + (f' ({len(unexpected)} unexpected keys ignored)' if unexpected else ''))
    return {'loaded': list(loadable), 'missing': missing, 'unexpected': unexpected, 'mismatched': mismatched}


def load_for_eval(model, spec):
    """``model`` with the weights file ``spec`` loaded strictly (see :func:`load_weights`), in eval mode.

    Raises:
        UserError: No such weights file, or weights of another model (naming the first mismatched keys).
    """
    load_weights(model, spec, strict=True)
    model.eval()
    return model


def randomize(model, seed=0, size=96):
    """Give ``model`` random weights whose logits are not degenerate, and put it in eval mode.

    Conv biases are drawn from N(0, 0.5); every batch norm gets a random affine transform and running
    statistics measured on its own input for one random ``size`` x ``size`` image, so activations neither
    vanish nor explode through the depth of the network.

    Returns:
        paddle.nn.Layer: ``model``.
    """
    rng = np.random.default_rng(seed)

    def calibrate(layer, inputs):
        features = inputs[0]
        channels = features.shape[1]
        layer._mean.set_value(features.mean(axis=[0, 2, 3]))
        layer._variance.set_value(features.var(axis=[0, 2, 3], unbiased=False) + 1e-3)
        layer.weight.set_value(rng.uniform(0.5, 1.5, channels).astype('float32'))
        layer.bias.set_value(rng.normal(0, 0.2, channels).astype('float32'))

    hooks = []
    for layer in model.sublayers():
        if isinstance(layer, paddle.nn.Conv2D) and layer.bias is not None:
            layer.bias.set_value(rng.normal(0, 0.5, layer.bias.shape).astype('float32'))
        if isinstance(layer, paddle.nn.BatchNorm2D):
            hooks.append(layer.register_forward_pre_hook(calibrate))
    model.eval()
    with paddle.no_grad():
        model(paddle.to_tensor(rng.uniform(-1, 1, (1, 3, size, size)).astype('float32')))
    for hook in hooks:
        hook.remove()
    return model
