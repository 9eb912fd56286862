"""How a fast-path entry is run: Paddle Inference with oneDNN on CPU, as a ``forward(batch) -> logits``.

:func:`inference_forward` runs any exported folder: a cache entry (:mod:`paddle_psp.inference.entry`), which
holds the program Paddle Inference's graph passes already made of the export (``OPTIMIZED_FILES``), loaded
without running the passes again, or a plain export such as ``paddleseg export`` writes, optimized at load.
:func:`entry_forward` is how the fast path runs its entries: one math thread per physical core and oneDNN's
shape cache sized for the test-time augmentation. :func:`predictor_config` is the one Paddle Inference
configuration, shared with the passes that make an entry, so that both agree on the oneDNN ops. Why the
settings are what they are: docs/performance.md, "Why the fast path is what it is".
"""
import contextlib
import os

import numpy as np
from paddle import inference

from paddle_psp.core.console import quiet_stdout
from paddle_psp.core.errors import UserError
from paddle_psp.core.log import logger
from paddle_psp.core.runtime import physical_cores
from paddle_psp.inference.export import MODEL_FILES

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
# capacity re-create primitives on every image: entry_forward(shapes=...) raises it for more scales.
ONEDNN_SHAPE_CACHE = 4
# The names Paddle Inference saves its optimized program under (Config.enable_save_optim_model).
OPTIMIZED_FILES = ('_optimized.pdmodel', '_optimized.pdiparams')


def entry_forward(model_dir, shapes=None, note='', int8=False):
    """:func:`inference_forward` of a cache entry as the fast path runs it, with one line saying so.

    Args:
        model_dir (str): The entry's folder.
        shapes (int, optional): Input shapes each image sends to ``forward`` (oneDNN keeps the primitives of
            at least this many). Default: ``ONEDNN_SHAPE_CACHE``.
        note (str, optional): Appended to the line logged. Default: ''.
        int8 (bool, optional): The entry is quantized. Default: False.
    """
    threads = physical_cores()
    forward = inference_forward(model_dir, cpu_threads=threads, shape_cache=max(ONEDNN_SHAPE_CACHE, shapes or 0),
                                int8=int8)
    logger.info(f'fast forward: Paddle Inference with oneDNN {"int8" if int8 else "fp32"}, {threads} threads, '
                f'model {model_dir}{note}')
    return forward


def inference_forward(model_dir, use_mkldnn=True, cpu_threads=None, shape_cache=ONEDNN_SHAPE_CACHE, int8=False):
    """A ``forward(batch) -> np.ndarray`` running an exported model with Paddle Inference on CPU.

    Args:
        model_dir (str): Folder with model.pdmodel and model.pdiparams (:func:`export.save_static_model`),
            or with the ``OPTIMIZED_FILES`` :func:`paddle_psp.inference.entry.save_optimized` makes of them,
            which are used with oneDNN (without their graph passes, already applied).
        use_mkldnn (bool, optional): Use oneDNN kernels (all ops but pool2d, see ``ONEDNN_OPS``). Default: True.
        cpu_threads (int, optional): Math library threads. Default: Paddle's default.
        shape_cache (int, optional): Input shapes whose oneDNN primitives stay cached. Default:
            ``ONEDNN_SHAPE_CACHE``.
        int8 (bool, optional): Run a quantized model (``paddleseg export --quantize int8``) on oneDNN's int8
            kernels; without it such a model runs its fake quant ops in fp32. (``OPTIMIZED_FILES`` of an int8
            model already are its int8 program.) Default: False.

    Returns:
        callable: ``forward(batch)`` taking an NCHW float32 numpy array and returning the model's output;
        its ``kind`` attribute is 'paddle-inference'.
    """
    optimized = use_mkldnn and all(os.path.isfile(os.path.join(model_dir, name)) for name in OPTIMIZED_FILES)
    config = predictor_config(model_dir, OPTIMIZED_FILES if optimized else MODEL_FILES, use_mkldnn,
                              cpu_threads, shape_cache)
    if optimized:
        config.switch_ir_optim(False)
    elif int8 and use_mkldnn:
        config.enable_onednn_int8()
    predictor = create_predictor(config, int8)
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


def create_predictor(config, int8=False):
    """``paddle.inference.create_predictor(config)``; for an int8 model with its passes' output to stdout
    silenced (they print there, glog or not)."""
    with quiet_stdout() if int8 else contextlib.nullcontext():
        return inference.create_predictor(config)


def predictor_config(model_dir, names, use_mkldnn, cpu_threads, shape_cache):
    """The Paddle Inference config of :func:`inference_forward` for the model files ``names`` of ``model_dir``.

    Raises:
        UserError: One of the files is missing.
    """
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
