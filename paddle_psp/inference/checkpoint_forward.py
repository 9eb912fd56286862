"""A config's model with a checkpoint, as the fastest ``forward`` (what ``val``, ``predict`` and ``benchmark``
run).

On the fast CPU path the export cache is asked first by recipe (:func:`recipe_forward`): when it knows this
config and checkpoint (and for ``--quantize int8`` these calibration files), the predictor is made from its
entry without building the model, reading the checkpoint or running the calibration images through the
transforms. Otherwise the model is built, the checkpoint loaded and :func:`fast_forward` finds (or makes)
the entry by the model's fingerprint, and maps the recipe to it for the next start.

Each step ends a stage of the verb's ``--profile`` breakdown (:class:`paddle_psp.core.stages.Stages`): cache
lookup (fast path), then (int8) calibration images, model build, checkpoint and predictor, or on a recipe hit
the predictor alone; then the first forward.
"""
from paddle_psp.inference.cache import size_limit
from paddle_psp.core.errors import UserError
from paddle_psp.inference.predictor import fast_forward, recipe_forward
from paddle_psp.inference.quantize import (DEFAULT_CALIB_IMAGES, calibration_recipe, check_quantize,
                                           config_calibration)
from paddle_psp.inference.recipe import recipe_key
from paddle_psp.weights.state_dict import load_for_eval


def checkpoint_forward(cfg, model_path, fast, stages, shapes=None, quantize='none',
                       calib_images=DEFAULT_CALIB_IMAGES):
    """``forward(batch) -> logits`` of the config's model with the weights at ``model_path``.

    Args:
        cfg (paddle_psp.config.SegConfig): The loaded config.
        model_path (str): Checkpoint: a file, a folder holding one, a URL or a zoo name.
        fast (bool): The fast CPU path (False: the dygraph model, see :func:`fast_forward`).
        stages (paddle_psp.core.stages.Stages): Timings of the start-up (marked even when disabled).
        shapes (int, optional): Input shapes per image, :meth:`InferOptions.input_shapes` (see
            :func:`fast_forward`). Default: None.
        quantize (str, optional): 'int8' runs the fast path quantized, calibrated on ``calib_images``
            images of the config's train_dataset (see :mod:`paddle_psp.inference.quantize`). Default: 'none'.
        calib_images (int, optional): Calibration images for 'int8'. Default: 32.

    Returns:
        callable: See :func:`fast_forward`; its first call ends the 'first forward' stage.

    Raises:
        UserError: ``fast`` and ``$PADDLE_PSP_CACHE_SIZE`` is not a size; bad ``quantize`` /
            ``calib_images`` (see :func:`check_quantize`), or a missing or bad train_dataset for 'int8' on
            a cache miss (see :func:`config_calibration`).
    """
    int8 = check_quantize(quantize, calib_images, fast)
    forward = recipe = None
    if fast:
        size_limit()  # a bad $PADDLE_PSP_CACHE_SIZE is one error line before anything is logged
        calibration = calibration_recipe(cfg, calib_images) if int8 else None
        if calibration is not None or not int8:  # an int8 recipe needs its calibration files listed
            recipe = recipe_key(cfg, model_path, calibration)
        forward = recipe_forward(recipe, shapes=shapes, on_hit=lambda: stages.mark('cache lookup'), int8=int8)
        if forward is None:
            stages.mark('cache lookup')
    if forward is None:
        calibration = config_calibration(cfg, quantize, calib_images)  # before the model: bad data fails fast
        if calibration is not None:
            stages.mark('calibration images')
        model = cfg.build_model(pretrained=False)  # the checkpoint replaces any pretrained weights: no download
        stages.mark('model build')
        model = load_for_eval(model, model_path)
        stages.mark('checkpoint')
        forward = fast_forward(model, fast=fast, shapes=shapes, calibration=calibration, recipe=recipe)
    stages.mark('predictor')
    return stages.first_call(forward, 'first forward') if stages.enabled else forward
