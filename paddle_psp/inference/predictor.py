"""The fastest evaluation ``forward`` for a dygraph segmentation model: :func:`fast_forward`.

On CPU the model is turned into an inference-only copy that computes the same function
(:func:`inference_copy`), exported once to an old-format ``.pdmodel`` by
:func:`paddle_psp.inference.export.save_static_model` and cached on disk under a hash of the weights and
the model structure (:func:`exported_model_dir`, in the bounded cache of :mod:`paddle_psp.inference.cache`),
and run by Paddle Inference with oneDNN on one thread per physical core (:func:`inference_forward`, which
also runs models written by ``paddleseg export``).

The copy differs from the model only in where the convolution biases are added (fp32 throughout): each
is moved into the batch norm that follows it (:meth:`ConvBN.fold_bias`), because Paddle Inference does
not fuse Paddle's traced bias add, while it does fuse conv + batch norm (+ ReLU) into one oneDNN
convolution.

A cache entry holds the program Paddle Inference's graph passes make of the export (oneDNN fusions of
convolution, batch norm and activations; :func:`save_optimized`), saved once when the entry is built, so
that creating a predictor from it skips those passes, with bit-identical logits and the same forward time;
an int8 entry holds the program of the int8 passes (``Config.enable_onednn_int8``) the same way. Why: the
passes are most of a predictor's start-up (docs/performance.md, "Why the fast path is what it is").

A start that knows its config and checkpoint but not yet its model asks :func:`recipe_forward` first: the
cache's index may name the entry without the model being built (:mod:`paddle_psp.inference.recipe`);
:func:`fast_forward` adds the mapping when given the recipe.

On GPU, or with ``fast=False``, the dygraph model runs as it is under ``paddle.no_grad``.
"""
import contextlib
import copy
import hashlib
import json
import os

import numpy as np
import paddle
from paddle import inference

from paddle_psp.core.errors import UserError, one_line
from paddle_psp.core.log import logger
from paddle_psp.core.console import quiet_stdout
from paddle_psp.inference import cache, export, recipe as recipes
from paddle_psp.inference.tta import layer_forward, logits_array
from paddle_psp.models.layers import ConvBN
from paddle_psp.core.runtime import physical_cores


def fast_forward(model, device=None, fast=True, cache_dir=None, shapes=None, calibration=None, recipe=None):
    """A ``forward(batch) -> logits`` callable: the fastest exact evaluation path for ``model``.

    Args:
        model (paddle.nn.Layer): A segmentation model whose eval-mode output is ``[logits, ...]``
            (the first element is used), e.g. ZooPSPNet or ZooDeepLabV3. It is not modified.
        device (str, optional): 'cpu', 'gpu' or 'gpu:N'. Default: ``paddle.get_device()``.
        fast (bool, optional): False runs the dygraph model as it is (the reference path). Default: True.
        cache_dir (str, optional): Where exported models are kept. Default: ``$PADDLE_PSP_CACHE`` or
            ``~/.cache/paddle_psp/inference`` (see :mod:`paddle_psp.inference.cache`).
        shapes (int, optional): Input shapes each image sends to ``forward``, e.g.
            :meth:`InferOptions.input_shapes` for test-time augmentation over more scales than
            ``ONEDNN_SHAPE_CACHE``: oneDNN keeps the primitives of at least this many shapes, so that they
            are not created again for every image. Default: ``ONEDNN_SHAPE_CACHE``.
        calibration (list, optional): Calibration batches (:func:`.quantize.config_calibration`): the
            exported model is then quantized to int8 and runs on oneDNN's int8 kernels (CPU only; not
            exact). Default: None (fp32, exact).
        recipe (str, optional): What ``model`` was made from (:func:`recipes.recipe_key`): mapped to its
            entry in the cache's index, for :func:`recipe_forward`. Default: None.

    Returns:
        callable: ``forward(batch)`` taking an NCHW float32 numpy array and returning the logits
        (N x classes x H x W float32 numpy array). Its ``kind`` attribute says which path it is:
        'paddle-inference' or 'dygraph' (asked for, on GPU, or after a failed export, with a warning).

    Raises:
        UserError: ``$PADDLE_PSP_CACHE_SIZE`` is not a size (checked on the fast path only).
    """
    device = device or paddle.get_device()
    if not fast or not device.startswith('cpu'):
        return _dygraph_forward(model)
    cache.size_limit()  # an invalid $PADDLE_PSP_CACHE_SIZE is the user's error, not a failed export
    try:
        with _cached_export(model, cache_dir, calibration, recipe) as model_dir:
            return _entry_forward(model_dir, shapes, int8=calibration is not None)
    except Exception as err:  # any export / load failure: evaluation still runs, on the slower path
        logger.warning(f'fast forward unavailable, running the dygraph model: {type(err).__name__}: '
                       f'{one_line(err, limit=300)}')
        return _dygraph_forward(model)


def recipe_forward(recipe, cache_dir=None, shapes=None, on_hit=None, int8=False):
    """The fast forward of the cache entry the index maps ``recipe`` to, made without the model; None on a
    miss (see :func:`cache.recipe_entry`), off CPU, or when the entry cannot be loaded (with a warning).

    Args:
        recipe (str): :func:`recipes.recipe_key` of the config and checkpoint, or None (a miss).
        cache_dir (str, optional): See :func:`fast_forward`.
        shapes (int, optional): See :func:`fast_forward`.
        on_hit (callable, optional): Called without arguments once the entry is found, before the
            predictor is made (e.g. to time the look-up). Default: None.
        int8 (bool, optional): The recipe names an int8 export: run it on oneDNN's int8 kernels. Default:
            False.

    Raises:
        UserError: ``$PADDLE_PSP_CACHE_SIZE`` is not a size.
    """
    if recipe is None or not paddle.get_device().startswith('cpu'):
        return None
    limit = cache.size_limit()
    try:
        with cache.recipe_entry(recipe, recipes.sources_unchanged, cache_dir, limit) as model_dir:
            if model_dir is None:
                return None
            if on_hit is not None:
                on_hit()
            return _entry_forward(model_dir, shapes, ' (found for this config and checkpoint: not built)', int8)
    except Exception as err:  # the full start builds the model and tries again
        logger.warning(f'cached model of this config and checkpoint not loaded: {type(err).__name__}: '
                       f'{one_line(err, limit=300)}')
        return None


def _entry_forward(model_dir, shapes, note='', int8=False):
    threads = physical_cores()
    forward = inference_forward(model_dir, cpu_threads=threads, shape_cache=max(ONEDNN_SHAPE_CACHE, shapes or 0),
                                int8=int8)
    logger.info(f'fast forward: Paddle Inference with oneDNN {"int8" if int8 else "fp32"}, {threads} threads, '
                f'model {model_dir}{note}')
    return forward


def _dygraph_forward(model):
    run = layer_forward(model)

    def forward(batch):
        return logits_array(run(np.ascontiguousarray(batch, np.float32)))
    forward.kind = 'dygraph'
    return forward


def exported_model_dir(model, cache_dir=None):
    """The cache folder holding ``model``'s inference copy, for any input size (a fixed-size export was
    measured no faster, and Paddle Inference does not enforce it): ``OPTIMIZED_FILES`` for oneDNN
    (:func:`save_optimized`), or the export's model.pdmodel / model.pdiparams if saving those failed.

    Exports only when the cache has no valid entry for the model (see :mod:`paddle_psp.inference.cache`).
    Another process may evict the entry once this returns; :func:`fast_forward` loads it under the
    cache's lock instead.
    """
    with _cached_export(model, cache_dir) as folder:
        return folder


def _cached_export(model, cache_dir=None, calibration=None, recipe=None):
    """:func:`cache.cached_entry` for ``model``'s inference copy (quantized to int8 on ``calibration``
    when given): a context manager yielding its folder. ``recipe`` (optional) is mapped to the entry, with
    the sources that made it."""
    key, description = model_fingerprint(model)
    if calibration is not None:
        digest = hashlib.blake2b(key.encode(), digest_size=16)
        for batch in calibration:
            digest.update(f'{batch.shape};'.encode() + np.ascontiguousarray(batch, np.float32).tobytes())
        key = description['int8_calibration'] = digest.hexdigest()
    if recipe is not None:
        recipe = (recipe, recipes.source_record([model] + model.sublayers()))

    def build(folder):
        export.save_static_model(inference_copy(model), folder, [None, 3, None, None], 'none', calibration)
        save_optimized(folder, int8=calibration is not None)
    return cache.cached_entry(key, build, cache_dir, description=description, recipe=recipe)


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
    """A hash of this module, of the source files defining the layers' classes and of the Python files
    beside them, such as the functions those classes call (edits re-export). Paddle's own classes are
    covered by its version."""
    files = (__file__, export.__file__, export.quantization.__file__)
    return recipes.folders_digest(recipes.layer_folders(layers), files=files)


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
    for block in layer.sublayers(include_self=True):
        if isinstance(block, ConvBN):
            block.fold_bias()


# Ops that run on oneDNN: every op of the exported models except pool2d. oneDNN's adaptive pool2d keeps the
# kernel of the first input size for later, larger inputs and fails on maps smaller than the bin; Paddle's
# own kernel is exact, and no slower overall (docs/performance.md, "Why the fast path is what it is").
ONEDNN_OPS = {'conv2d', 'fused_conv2d', 'batch_norm', 'relu', 'elementwise_add', 'concat', 'matmul', 'matmul_v2',
              'fc', 'bilinear_interp_v2', 'scale', 'softmax', 'transpose2', 'reshape2', 'slice', 'fill_constant',
              'eye', 'shape', 'cast', 'dropout', 'top_k_v2', 'arg_max'}
# oneDNN keeps primitives and reordered weights per input shape, without limit by default, and a shape not
# cached costs part of a forward (figures: docs/performance.md, "Why the fast path is what it is"). 4 covers
# 3-scale TTA (the flips of a scale are one batch, the sliding windows of a scale one size). Past the capacity
# Paddle drops an arbitrary shape (its shape map is unordered), so more shapes in rotation than the
# capacity re-create primitives on every image: fast_forward(shapes=...) raises it for more scales.
ONEDNN_SHAPE_CACHE = 4


# The names Paddle Inference saves its optimized program under (Config.enable_save_optim_model).
OPTIMIZED_FILES = ('_optimized.pdmodel', '_optimized.pdiparams')


def inference_forward(model_dir, use_mkldnn=True, cpu_threads=None, shape_cache=ONEDNN_SHAPE_CACHE, int8=False):
    """A ``forward(batch) -> np.ndarray`` running an exported model with Paddle Inference on CPU.

    Args:
        model_dir (str): Folder with model.pdmodel and model.pdiparams (:func:`export.save_static_model`),
            or with the ``OPTIMIZED_FILES`` :func:`save_optimized` makes of them, which are used with oneDNN
            (without their graph passes, already applied).
        use_mkldnn (bool, optional): Use oneDNN kernels (all ops but pool2d, see ``ONEDNN_OPS``). Default: True.
        cpu_threads (int, optional): Math library threads. Default: Paddle's default.
        shape_cache (int, optional): Input shapes whose oneDNN primitives stay cached. Default:
            ``ONEDNN_SHAPE_CACHE``.
        int8 (bool, optional): Run a quantized model (``paddleseg export --quantize int8``) on oneDNN's int8
            kernels; without it such a model runs its fake quant ops in fp32. (``OPTIMIZED_FILES`` of an int8
            model already are its int8 program.) Default: False.
    """
    optimized = use_mkldnn and all(os.path.isfile(os.path.join(model_dir, name)) for name in OPTIMIZED_FILES)
    config = _predictor_config(model_dir, OPTIMIZED_FILES if optimized else export.MODEL_FILES, use_mkldnn,
                               cpu_threads, shape_cache)
    if optimized:
        config.switch_ir_optim(False)
    elif int8 and use_mkldnn:
        config.enable_onednn_int8()
    with quiet_stdout() if int8 else contextlib.nullcontext():  # int8 passes print to stdout, glog or not
        predictor = inference.create_predictor(config)
    source = predictor.get_input_handle(predictor.get_input_names()[0])
    target = predictor.get_output_handle(predictor.get_output_names()[0])

    def forward(batch):
        batch = np.ascontiguousarray(batch, np.float32)
        source.reshape(batch.shape)
        source.copy_from_cpu(batch)
        predictor.run()
        return target.copy_to_cpu()
    forward.kind = 'paddle-inference'
    return forward


def save_optimized(folder, int8=False):
    """Replace the export in ``folder`` by the ``OPTIMIZED_FILES`` that Paddle Inference's graph passes make
    of it for :func:`inference_forward` with oneDNN (``int8``: its int8 passes, for a quantized export). If
    that fails the export is kept, with a warning."""
    try:
        # No thread count: the passes do not depend on it, and setting it changes this process' math library.
        config = _predictor_config(folder, export.MODEL_FILES, True, None, ONEDNN_SHAPE_CACHE)
        config.set_optim_cache_dir(folder)
        config.enable_save_optim_model(True)
        if int8:
            config.enable_onednn_int8()
        with quiet_stdout() if int8 else contextlib.nullcontext():  # int8 passes print to stdout, glog or not
            inference.create_predictor(config)
        missing = [name for name in OPTIMIZED_FILES if not os.path.isfile(os.path.join(folder, name))]
        if missing:
            raise RuntimeError(f'Paddle Inference saved {sorted(os.listdir(folder))}, not {", ".join(missing)}')
    except Exception as err:  # the export still runs, its graph passes applied at every load
        logger.warning(f'optimized program not saved, the export is kept: {type(err).__name__}: '
                       f'{one_line(err, limit=300)}')
        _remove_files(folder, OPTIMIZED_FILES)
    else:
        _remove_files(folder, export.MODEL_FILES)


def _remove_files(folder, names):
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(folder, name))


def _predictor_config(model_dir, names, use_mkldnn, cpu_threads, shape_cache):
    """The Paddle Inference config of :func:`inference_forward` for the model files ``names`` of ``model_dir``."""
    paths = [os.path.join(model_dir, name) for name in names]
    for path in paths:
        if not os.path.isfile(path):
            raise UserError(f'{path}: missing; expected a folder written by paddleseg export')
    config = inference.Config(*paths)
    config.disable_gpu()
    config.disable_glog_info()
    if use_mkldnn:
        config.enable_onednn()
        config.set_onednn_op(ONEDNN_OPS)
        config.set_onednn_cache_capacity(shape_cache)
    else:
        config.disable_onednn()
    config.enable_memory_optim()  # reuses intermediate buffers: a lower peak RSS at the same speed
    if cpu_threads:
        config.set_cpu_math_library_num_threads(int(cpu_threads))
    return config
