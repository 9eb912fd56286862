"""The fastest evaluation ``forward`` for a dygraph segmentation model: :func:`fast_forward`.

On CPU the model is turned into an inference-only copy that computes the same function, traced to an
old-format ``.pdmodel`` (the format Paddle Inference runs with oneDNN), cached on disk under a hash of
the weights and the model structure, and run by Paddle Inference with oneDNN on one thread per physical
core (:func:`paddle_psp.engine.export.inference_forward`: pool2d stays on Paddle's kernel, oneDNN's adaptive
pooling being wrong when the input size changes). The copy differs from the model only in where the
convolution biases are added (fp32 throughout): each is moved into the batch norm that follows it
(``BN(conv(x) + b)`` is ``BN'(conv(x))`` with running mean ``mean - b``), because Paddle Inference does not
fuse Paddle's traced bias add, while it does fuse conv + batch norm (+ ReLU) into one oneDNN convolution.

On GPU, or with ``fast=False``, the dygraph model runs as it is under ``paddle.no_grad``.

The export runs in this process under ``paddle.pir_utils.DygraphOldIrGuard`` (which switches program
construction to the old IR and back), through :func:`paddle_psp.engine.export.save_static_model`.
"""
import copy
import hashlib
import inspect
import json
import os
import shutil
import tempfile

import numpy as np
import paddle

from paddle_psp.engine import export
from paddle_psp.engine.infer import layer_forward, logits_array
from paddle_psp.core.errors import one_line
from paddle_psp.core.log import logger
from paddle_psp.models.layers import ConvBN
from paddle_psp.core.runtime import physical_cores

CACHE_VAR = 'PADDLE_PSP_CACHE'
DONE_MARKER = 'fingerprint.json'


def fast_forward(model, device=None, fast=True, cache_dir=None):
    """A ``forward(batch) -> logits`` callable: the fastest exact evaluation path for ``model``.

    Args:
        model (paddle.nn.Layer): A segmentation model whose eval-mode output is ``[logits, ...]``
            (the first element is used), e.g. ZooPSPNet or ZooDeepLabV3. It is not modified.
        device (str, optional): 'cpu', 'gpu' or 'gpu:N'. Default: ``paddle.get_device()``.
        fast (bool, optional): False runs the dygraph model as it is (the reference path). Default: True.
        cache_dir (str, optional): Where exported models are kept. Default: ``$PADDLE_PSP_CACHE`` or
            ``~/.cache/paddle_psp/inference``.

    Returns:
        callable: ``forward(batch)`` taking an NCHW float32 numpy array and returning the logits
        (N x classes x H x W float32 numpy array). Its ``kind`` attribute says which path it is:
        'paddle-inference' or 'dygraph' (asked for, on GPU, or after a failed export, with a warning).
    """
    device = device or paddle.get_device()
    if not fast or not device.startswith('cpu'):
        return _dygraph_forward(model)
    try:
        model_dir = exported_model_dir(model, cache_dir)
        threads = physical_cores()
        forward = export.inference_forward(model_dir, cpu_threads=threads)
    except Exception as err:  # any export / load failure: evaluation still runs, on the slower path
        logger.warning(f'fast forward unavailable, running the dygraph model: {type(err).__name__}: '
                       f'{one_line(err, limit=300)}')
        return _dygraph_forward(model)
    logger.info(f'fast forward: Paddle Inference with oneDNN, {threads} threads, model {model_dir}')
    return forward


def _dygraph_forward(model):
    run = layer_forward(model)

    def forward(batch):
        return logits_array(run(np.ascontiguousarray(batch, np.float32)))
    forward.kind = 'dygraph'
    return forward


def default_cache_dir():
    """``$PADDLE_PSP_CACHE`` or ``~/.cache/paddle_psp/inference``."""
    home_cache = os.path.join(os.path.expanduser('~'), '.cache', 'paddle_psp', 'inference')
    return os.environ.get(CACHE_VAR) or home_cache


def exported_model_dir(model, cache_dir=None):
    """The cache folder holding ``model``'s inference copy as model.pdmodel / model.pdiparams, for any
    input size (a fixed-size export was measured no faster, and Paddle Inference does not enforce it).

    Exports only when the folder is missing. The export goes to a temporary folder that is renamed into
    place when complete, so a crash or a concurrent export never leaves a half-written entry.
    """
    root = cache_dir or default_cache_dir()
    key, description = model_fingerprint(model)
    target = os.path.join(root, key)
    if os.path.isfile(os.path.join(target, DONE_MARKER)):
        return target
    os.makedirs(root, exist_ok=True)
    work = tempfile.mkdtemp(dir=root, prefix='.export.')
    try:
        logger.info(f'exporting an inference model to {target}')
        with paddle.pir_utils.DygraphOldIrGuard():
            export.save_static_model(inference_copy(model), work, [None, 3, None, None], 'none')
        with open(os.path.join(work, DONE_MARKER), 'w', encoding='utf-8') as handle:
            json.dump(description, handle, indent=1)
        try:
            os.rename(work, target)
        except OSError:  # another process finished the same export first
            if not os.path.isfile(os.path.join(target, DONE_MARKER)):
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def model_fingerprint(model):
    """A hash of everything the exported model depends on, and the description it was made from.

    Covers every tensor of the state dict (name, shape, dtype, bytes), the layer tree (``repr``, which
    lists each layer's type and shapes), the public numeric / boolean attributes of every layer (e.g.
    ``align_corners``, ``backbone_indices``), the source files of the layer classes and of this module,
    and Paddle's version.

    Returns:
        tuple: (hex digest, dict describing the inputs of the hash).
    """
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        array = np.ascontiguousarray(tensor.numpy())
        digest.update(f'{name}:{array.dtype}:{array.shape};'.encode())
        digest.update(array.tobytes())
    description = {
        'model': type(model).__name__,
        'paddle': paddle.__version__,
        'sources': _source_digest([model] + model.sublayers()),
        'attributes': {name or '.': _simple_attributes(layer)
                       for name, layer in model.named_sublayers(include_self=True)},
    }
    digest.update(repr(model).encode())
    digest.update(json.dumps(description, sort_keys=True).encode())
    description['weights_and_structure'] = digest.hexdigest()
    return digest.hexdigest(), description


def _source_digest(layers):
    """A hash of the source files defining the layers' classes and of this module (edits re-export)."""
    files = {inspect.getsourcefile(type(layer)) for layer in layers} | {__file__}
    digest = hashlib.blake2b(digest_size=8)
    for path in sorted(filter(None, files)):
        with open(path, 'rb') as handle:
            digest.update(handle.read())
    return digest.hexdigest()


def _simple_attributes(layer):
    simple = (bool, int, float)
    attributes = {}
    for key, value in vars(layer).items():
        if key.startswith('_') or key == 'training':
            continue
        if isinstance(value, simple):
            attributes[key] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(item, simple) for item in value):
            attributes[key] = list(value)
    return attributes


def inference_copy(model):
    """An eval-mode copy of ``model`` computing the same logits faster (see the module docstring)."""
    layer = copy.deepcopy(model)
    layer.eval()
    fold_conv_bias(layer)
    return layer


def fold_conv_bias(layer):
    """Move the bias of every ConvBN's convolution into its batch norm's running mean (in place)."""
    with paddle.no_grad():
        for block in layer.sublayers(include_self=True):
            if isinstance(block, ConvBN) and block._conv.bias is not None:
                norm = block._batch_norm
                norm._mean.set_value(norm._mean - block._conv.bias)
                block._conv.bias = None
