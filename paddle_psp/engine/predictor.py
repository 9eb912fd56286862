"""The fastest evaluation ``forward`` for a dygraph segmentation model: :func:`fast_forward`.

On CPU the model is turned into an inference-only copy that computes the same function, traced to an
old-format ``.pdmodel`` (the format Paddle Inference runs with oneDNN), cached on disk under a hash of
the weights and the model structure, and run by Paddle Inference with oneDNN on one thread per physical
core (:func:`paddle_psp.engine.export.inference_forward`: pool2d stays on Paddle's kernel, oneDNN's adaptive
pooling being wrong when the input size changes). The copy differs from the model only in how it computes
(fp32 throughout):

- a convolution's bias is moved into the batch norm that follows it (``BN(conv(x) + b)`` is
  ``BN'(conv(x))`` with running mean ``mean - b``); Paddle's traced bias add is not fused by Paddle
  Inference, a conv + batch norm (+ ReLU) is, into one oneDNN convolution;
- PSPNet's 3x3 fusion convolution over ``concat[x, up(p6), up(p3), up(p2), up(p1)]`` is split into a
  conv over ``x`` plus, for each pooled branch, the conv applied at the pooled resolution (one 1x1 conv
  per kernel tap) followed by the bilinear upsampling and the tap's shift, done as two small matrix
  products with interpolation matrices (``F.linear``: ``paddle.matmul`` cannot be traced to the old
  IR). Convolution, bilinear upsampling and zero-padded shifts are linear, so this is the same sum in
  another order; it removes the 2048 upsampled channels from the largest convolution of the model
  (about 30 % of PSPNet's MACs).

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
import paddle.nn as nn
import paddle.nn.functional as F

from paddle_psp.engine import export
from paddle_psp.engine.infer import layer_forward, logits_array
from paddle_psp.log import logger
from paddle_psp.models.layers import ConvBN
from paddle_psp.models.pspnet import PyramidPooling
from paddle_psp.runtime import physical_cores

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
                       f'{" ".join(str(err).split())[:300]}')
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
    for parent in [layer] + list(layer.sublayers()):
        for name, child in list(parent.named_children()):
            if isinstance(child, PyramidPooling) and FactoredPyramidPooling.supports(child):
                setattr(parent, name, FactoredPyramidPooling(child))
    layer.eval()
    return layer


def fold_conv_bias(layer):
    """Move the bias of every ConvBN's convolution into its batch norm's running mean (in place)."""
    with paddle.no_grad():
        for block in layer.sublayers(include_self=True):
            if isinstance(block, ConvBN) and block._conv.bias is not None:
                norm = block._batch_norm
                norm._mean.set_value(norm._mean - block._conv.bias)
                block._conv.bias = None


class FactoredPyramidPooling(nn.Layer):
    """PSPNet's pyramid pooling with the fusion conv over the pooled branches done at pooled resolution.

    ``relu(BN(conv(concat[x, up(s_1), ..., up(s_n)])))`` is computed as
    ``relu(BN(conv_x(x)) + sum_i sum_taps shift_tap(up(scale * W_i,tap @ s_i)))`` where ``scale`` is the
    batch norm's ``gamma / sqrt(var + eps)``; ``up`` and the shifts are applied as an interpolation matrix
    along each axis (built by upsampling an identity with the model's own bilinear resize).

    Args:
        module (PyramidPooling): The module to replace, with its conv bias already folded (see
            :func:`fold_conv_bias`).
    """

    def __init__(self, module):
        super().__init__()
        fusion = module.conv_bn_relu2
        weight = fusion._conv.weight.numpy()
        norm = fusion._batch_norm
        self.kernel = weight.shape[-1]
        self.channels = weight.shape[0]
        self.bin_sizes = [_pool_size(stage[0]) for stage in module.stages]
        self.align_corners = module.align_corners
        self.stages = module.stages
        branch = module.stages[0][1]._conv.weight.shape[0]
        direct = weight.shape[1] - branch * len(self.bin_sizes)
        self.direct_conv = nn.Conv2D(direct, self.channels, self.kernel, padding=self.kernel // 2,
                                     bias_attr=False)
        self.direct_conv.weight.set_value(weight[:, :direct])
        self.direct_norm = norm
        scale = norm.weight.numpy() / np.sqrt(norm._variance.numpy() + norm._epsilon)
        self.taps = nn.LayerList()
        for index in range(len(self.bin_sizes)):
            # concat order: x, last bin, ..., first bin
            start = direct + branch * (len(self.bin_sizes) - 1 - index)
            taps = weight[:, start:start + branch] * scale[:, None, None, None]  # C, branch, ky, kx
            conv = nn.Conv2D(branch, self.kernel ** 2 * self.channels, 1, bias_attr=False)
            conv.weight.set_value(np.ascontiguousarray(
                taps.transpose(2, 3, 0, 1).reshape(-1, branch, 1, 1)))  # out channel = (ky, kx, c)
            self.taps.append(conv)

    @staticmethod
    def supports(module):
        """Whether ``module``'s fusion conv is one this class rewrites exactly (odd square kernel, stride
        1, dilation 1, 'same' zero padding, no groups, ReLU) with square integer bins."""
        conv = module.conv_bn_relu2._conv
        size = conv._kernel_size
        same_padding = conv._padding in (size[0] // 2, [size[0] // 2] * 2)
        return (size[0] == size[1] and size[0] % 2 == 1 and conv._stride == [1, 1] and same_padding
                and conv._dilation == [1, 1] and conv._groups == 1
                and module.conv_bn_relu2.relu is not None and conv.bias is None
                and module.conv_bn_relu2.avg_down is None
                and all(_pool_size(stage[0]) is not None for stage in module.stages))

    def forward(self, x):
        shape = paddle.shape(x)
        kernel, channels = self.kernel, self.channels
        columns, row_weights = [], []
        for stage, taps, size in zip(self.stages, self.taps, self.bin_sizes):
            pooled = taps(stage(x)).reshape([-1, kernel, kernel, channels, size, size])  # N, ky, kx, c, y, x
            pooled = pooled.transpose([0, 3, 2, 5, 1, 4])
            pooled = pooled.reshape([-1, channels, kernel * size, kernel * size])
            # N, c, (kx, x), (ky, y) times [(ky, y), H]: the vertical upsampling and shifts.
            vertical = F.linear(pooled, self._tap_matrix(shape[2], size))
            columns.append(vertical.transpose([0, 1, 3, 2]))  # N, c, H, (kx, x)
            row_weights.append(self._tap_matrix(shape[3], size))
        # (N c H), (bin, kx, x) times [(bin, kx, x), W]: the horizontal ones, summed over bins and taps. As
        # one 2-D product: oneDNN runs the broadcast 4-D x 2-D form ~50x slower.
        columns = paddle.concat(columns, axis=3)
        upsampled = F.linear(columns.reshape([-1, columns.shape[3]]), paddle.concat(row_weights, axis=0))
        upsampled = upsampled.reshape([shape[0], channels, shape[2], shape[3]])
        return F.relu(self.direct_norm(self.direct_conv(x)) + upsampled)

    def _tap_matrix(self, length, size):
        """[kernel * size, length]: for each tap offset d, the bilinear weights of the ``size`` pooled
        positions at output position i + d, in column i (zeros outside: the conv's zero padding)."""
        identity = paddle.eye(size, dtype='float32').reshape([1, size, size, 1])
        weights = F.interpolate(identity, size=[length, 1], mode='bilinear', align_corners=self.align_corners)
        weights = weights.reshape([size, -1])  # pooled position, output position
        half = self.kernel // 2
        zeros = paddle.zeros([size, half], 'float32')
        padded = paddle.concat([zeros, weights, zeros], axis=1)
        shifted = [padded[:, start:(start - 2 * half) or None] for start in range(self.kernel)]
        return paddle.concat(shifted, axis=0)


def _pool_size(pool):
    """The square integer output size of an adaptive pool, or None."""
    size = getattr(pool, '_output_size', None)
    if isinstance(size, int):
        return size
    if isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1] and isinstance(size[0], int):
        return size[0]
    return None
