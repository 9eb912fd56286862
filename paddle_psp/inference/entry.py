"""How a fast-path cache entry is made: an exact inference copy of the model, exported once, its graph passes saved.

The copy (:func:`inference_copy`) computes the same function as the model (fp32 throughout) and differs
only in where the convolution biases are added: each is moved into the batch norm that follows it
(:meth:`ConvBN.fold_bias`), because Paddle Inference does not fuse Paddle's traced bias add, while it does
fuse conv + batch norm (+ ReLU) into one oneDNN convolution. The copy is exported for any input size by the
one export mechanism (:func:`paddle_psp.inference.export.save_static_model`), quantized to int8 on the way
when the entry is an int8 one.

The entry then keeps, instead of the export, the program Paddle Inference's graph passes make of it (oneDNN
fusions of convolution, batch norm and activations; for int8, the int8 passes): :func:`save_optimized`, run
once when the entry is built, so that a predictor made from the entry skips those passes, with
bit-identical logits. Why: the passes are most of a predictor's start-up (docs/performance.md, "Why the fast
path is what it is").

:func:`cached_export` puts this into the cache (:mod:`paddle_psp.inference.cache`) under the entry's name
(:func:`paddle_psp.inference.cache_key.entry_key`), building it only when the cache has no valid entry of
that name.
"""
import contextlib
import copy
import os

from paddle_psp.core.errors import one_line
from paddle_psp.core.log import logger
from paddle_psp.inference import cache, cache_key, export
from paddle_psp.inference.runner import ONEDNN_SHAPE_CACHE, OPTIMIZED_FILES, create_predictor, predictor_config
from paddle_psp.models.layers import ConvBN


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


def exported_model_dir(model, cache_dir=None):
    """The cache folder holding ``model``'s entry, for any input size (a fixed-size export was measured no
    faster, and Paddle Inference does not enforce it): ``OPTIMIZED_FILES`` for oneDNN
    (:func:`save_optimized`), or the export's model.pdmodel / model.pdiparams if saving those failed.

    Exports only when the cache has no valid entry for the model (see :mod:`paddle_psp.inference.cache`).
    Another process may evict the entry once this returns; the fast path loads it under the cache's lock
    instead (:func:`cached_export`).
    """
    with cached_export(model, cache_dir) as folder:
        return folder


def cached_export(model, cache_dir=None, calibration=None, recipe=None):
    """:func:`cache.cached_entry` for ``model``'s inference copy: a context manager yielding its folder,
    which holds the cache's lock until the ``with`` block ends (load the entry inside it).

    Args:
        model (paddle.nn.Layer): The model, its weights loaded. It is not modified.
        cache_dir (str, optional): The cache folder. Default: :func:`cache.cache_dir`.
        calibration (list, optional): Calibration batches: the entry is then the int8 one, quantized on
            them. Default: None (fp32).
        recipe (str, optional): A recipe (:func:`cache_key.recipe_key`) to map to the entry in the cache's
            index, with the sources that made it. Default: None.
    """
    key, description = cache_key.entry_key(model, calibration)
    if recipe is not None:
        recipe = (recipe, cache_key.source_record([model] + model.sublayers()))

    def build(folder):
        export.save_static_model(inference_copy(model), folder, [None, 3, None, None], 'none', calibration)
        save_optimized(folder, int8=calibration is not None)
    return cache.cached_entry(key, build, cache_dir, description=description, recipe=recipe)


def save_optimized(folder, int8=False):
    """Replace the export in ``folder`` by the ``OPTIMIZED_FILES`` that Paddle Inference's graph passes make
    of it for :func:`paddle_psp.inference.runner.inference_forward` with oneDNN (``int8``: its int8 passes,
    for a quantized export). If that fails the export is kept, with a warning."""
    try:
        # No thread count: the passes do not depend on it, and setting it changes this process' math library.
        config = predictor_config(folder, export.MODEL_FILES, True, None, ONEDNN_SHAPE_CACHE)
        config.set_optim_cache_dir(folder)
        config.enable_save_optim_model(True)
        if int8:
            config.enable_onednn_int8()
        create_predictor(config, int8)
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
