"""The evaluation ``forward(batch) -> logits`` that ``val``, ``predict``, ``benchmark`` and the Python API run.

:func:`make_forward` makes it from a config and a weights file (what ``--config`` and ``--model_path``
name), :func:`model_forward` from a model already built and loaded. On CPU both take the fast path: the
model's entry in the export cache (named by :mod:`paddle_psp.inference.cache_key`, made by
:mod:`paddle_psp.inference.entry`), run by Paddle Inference (:mod:`paddle_psp.inference.runner`). On GPU,
with ``fast=False``, or when the entry cannot be made or loaded (with a warning), the dygraph model runs as
it is under ``paddle.no_grad``.

:func:`make_forward` first asks the cache's index by recipe: when it knows this config and weights file (and
for ``--quantize int8`` these calibration files), the forward is made from the entry without building the
model, reading the weights file or running the calibration images through the transforms. Otherwise it
builds the model, loads the weights file and :func:`model_forward` finds (or makes) the entry by the model's
fingerprint, mapping the recipe to it for the next start.

Each step ends a stage of the verb's ``--profile`` breakdown (:class:`paddle_psp.core.stages.Stages`): cache
lookup (fast path), then (int8) calibration images, model build, checkpoint (the weights file loaded) and
predictor, or on a recipe hit the predictor alone; then the first forward.
"""
import dataclasses

import numpy as np
import paddle

from paddle_psp.core.errors import one_line
from paddle_psp.core.log import logger
from paddle_psp.inference import cache
from paddle_psp.inference.cache_key import recipe_key, sources_unchanged
from paddle_psp.inference.entry import cached_export
from paddle_psp.inference.quantize import (DEFAULT_CALIB_IMAGES, calibration_recipe, check_quantize,
                                           config_calibration)
from paddle_psp.inference.runner import entry_forward
from paddle_psp.inference.tta import layer_forward, logits_array
from paddle_psp.weights.state_dict import load_for_eval


@dataclasses.dataclass(frozen=True)
class ForwardOptions:
    """How :func:`make_forward` makes its forward.

    Attributes:
        fast (bool): The fast CPU path; False runs the dygraph model as it is (``--dygraph``).
        device (str): 'cpu', 'gpu' or 'gpu:N'; None: ``paddle.get_device()``.
        quantize (str): 'int8' runs the fast path quantized, calibrated on ``calib_images`` images of the
            config's train_dataset (see :mod:`paddle_psp.inference.quantize`); 'none': fp32, exact.
        calib_images (int): Calibration images for 'int8'.
        shapes (int): Input shapes each image sends to ``forward``, e.g. :meth:`InferOptions.input_shapes`
            for test-time augmentation over more scales than ``ONEDNN_SHAPE_CACHE``: oneDNN keeps the
            primitives of at least this many shapes, so that they are not created again for every image.
            None: ``ONEDNN_SHAPE_CACHE``.
        cache_dir (str): Where the entries are kept; None: ``$PADDLE_PSP_CACHE`` or
            ``~/.cache/paddle_psp/inference`` (see :mod:`paddle_psp.inference.cache`).
    """
    fast: bool = True
    device: str = None
    quantize: str = 'none'
    calib_images: int = DEFAULT_CALIB_IMAGES
    shapes: int = None
    cache_dir: str = None

    @classmethod
    def from_args(cls, args, shapes=None):
        """The options of a verb's parsed flags (``--dygraph``, ``--quantize``, ``--calib_images``; the device
        is the one ``--device`` set), for ``shapes`` input shapes per image."""
        return cls(fast=not args.dygraph, quantize=args.quantize, calib_images=args.calib_images, shapes=shapes)


def make_forward(cfg, weights_path, options=None, stages=None):
    """``forward(batch) -> logits`` of the config's model with the weights file ``weights_path``.

    Args:
        cfg (paddle_psp.config.SegConfig): The loaded config.
        weights_path (str): What ``--model_path`` takes: a weights file, a folder holding one, a URL or a
            zoo name.
        options (ForwardOptions, optional): Default: ``ForwardOptions()``.
        stages (paddle_psp.core.stages.Stages, optional): Timings of the start-up, marked at each step (see
            the module docstring). Default: None.

    Returns:
        callable: See :func:`model_forward`; with enabled ``stages`` its first call ends the 'first forward'
        stage.

    Raises:
        UserError: ``options.fast`` and ``$PADDLE_PSP_CACHE_SIZE`` is not a size; bad ``quantize`` /
            ``calib_images`` (see :func:`check_quantize`), or a missing or bad train_dataset for 'int8' on
            a cache miss (see :func:`config_calibration`).
    """
    options = options or ForwardOptions()
    mark = stages.mark if stages is not None else _no_mark
    int8 = check_quantize(options.quantize, options.calib_images, options.fast)
    forward = recipe = None
    if options.fast:
        recipe = _recipe(cfg, weights_path, options.calib_images, int8)
        forward = _recipe_forward(recipe, options, on_hit=lambda: mark('cache lookup'), int8=int8)
        if forward is None:
            mark('cache lookup')
    if forward is None:
        calibration = config_calibration(cfg, options.quantize, options.calib_images)  # bad data fails fast
        if calibration is not None:
            mark('calibration images')
        model = cfg.build_model(pretrained=False)  # the weights file replaces any pretrained weights
        mark('model build')
        model = load_for_eval(model, weights_path)
        mark('checkpoint')
        forward = model_forward(model, options.device, options.fast, options.cache_dir, options.shapes,
                                calibration, recipe)
    mark('predictor')
    return stages.first_call(forward, 'first forward') if stages is not None and stages.enabled else forward


def _no_mark(name):
    """No stage timings kept."""


def _recipe(cfg, weights_path, calib_images, int8):
    """The recipe of the entry (:func:`recipe_key`), or None when it cannot be known before the model is built.

    Raises:
        UserError: ``$PADDLE_PSP_CACHE_SIZE`` is not a size (one error line before anything is logged).
    """
    cache.size_limit()
    calibration = calibration_recipe(cfg, calib_images) if int8 else None
    if int8 and calibration is None:  # an int8 recipe needs its calibration files listed
        return None
    return recipe_key(cfg, weights_path, calibration)


def model_forward(model, device=None, fast=True, cache_dir=None, shapes=None, calibration=None, recipe=None):
    """A ``forward(batch) -> logits`` callable: the fastest exact evaluation path for ``model``.

    Args:
        model (paddle.nn.Layer): A segmentation model whose eval-mode output is ``[logits, ...]``
            (the first element is used), e.g. ZooPSPNet or ZooDeepLabV3. It is not modified.
        device (str, optional): See :class:`ForwardOptions`. Default: ``paddle.get_device()``.
        fast (bool, optional): See :class:`ForwardOptions`. Default: True.
        cache_dir (str, optional): See :class:`ForwardOptions`. Default: None.
        shapes (int, optional): See :class:`ForwardOptions`. Default: None.
        calibration (list, optional): Calibration batches (:func:`.quantize.config_calibration`): the
            exported model is then quantized to int8 and runs on oneDNN's int8 kernels (CPU only; not
            exact). Default: None (fp32, exact).
        recipe (str, optional): What ``model`` was made from (:func:`recipe_key`): mapped to its entry in the
            cache's index, for the next :func:`make_forward`. Default: None.

    Returns:
        callable: ``forward(batch)`` taking an NCHW float32 numpy array and returning the logits
        (N x classes x H x W float32 numpy array). Its ``kind`` attribute says which path it is:
        'paddle-inference' or 'dygraph' (asked for, on GPU, or after a failed export, with a warning).

    Raises:
        UserError: ``$PADDLE_PSP_CACHE_SIZE`` is not a size (checked on the fast path only).
    """
    if not fast or not _on_cpu(device):
        return _dygraph_forward(model)
    cache.size_limit()  # an invalid $PADDLE_PSP_CACHE_SIZE is the user's error, not a failed export
    try:
        with cached_export(model, cache_dir, calibration, recipe) as model_dir:
            return entry_forward(model_dir, shapes, int8=calibration is not None)
    except Exception as err:  # any export / load failure: evaluation still runs, on the slower path
        logger.warning(f'fast forward unavailable, running the dygraph model: {type(err).__name__}: '
                       f'{one_line(err, limit=300)}')
        return _dygraph_forward(model)


def _recipe_forward(recipe, options, on_hit, int8):
    """The forward of the entry the cache's index maps ``recipe`` to, made without the model; None on a miss
    (see :func:`cache.recipe_entry`), off CPU, or when the entry cannot be loaded (with a warning).
    ``on_hit()`` is called once the entry is found, before the predictor is made."""
    if recipe is None or not _on_cpu(options.device):
        return None
    limit = cache.size_limit()
    try:
        with cache.recipe_entry(recipe, sources_unchanged, options.cache_dir, limit) as model_dir:
            if model_dir is None:
                return None
            on_hit()
            return entry_forward(model_dir, options.shapes, ' (found for this config and weights file: not built)',
                                 int8)
    except Exception as err:  # the full start builds the model and tries again
        logger.warning(f'cached model of this config and weights file not loaded: {type(err).__name__}: '
                       f'{one_line(err, limit=300)}')
        return None


def _on_cpu(device):
    return (device or paddle.get_device()).startswith('cpu')


def _dygraph_forward(model):
    run = layer_forward(model)

    def forward(batch):
        return logits_array(run(np.ascontiguousarray(batch, np.float32)))
    forward.kind = 'dygraph'
    return forward
