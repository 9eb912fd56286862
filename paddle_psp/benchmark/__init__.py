"""``paddleseg benchmark``: fill the mIoU / mIoU (flip) / mIoU (ms+flip) table for zoo entries or a weights file.

One pass per image: the forward passes of the ms+flip set (scales 0.75 1.0 1.25 and a horizontal flip by
default) also give the single-scale column (scale 1.0, no flip) and the flip column (scale 1.0, with and
without the flip), so the three columns cost 6 forward passes per image instead of 9 in three separate
``paddleseg val`` runs, with the very same numbers. With ``--legacy_tta`` (PaddleSeg's TTA before PR #2933,
which produced the published ms+flip column) the scales chain, so scale 1.0 of the ms+flip set is not the
plain image; the scale-1.0 pair then runs on its own: 8 forward passes per image by default.

Outputs in ``--save_dir`` (default ``./output/benchmark``):

* ``benchmark.json``: per entry and column mIoU, Acc, Kappa, Dice, per-class IoU and the confusion
  matrix; timings (images/s, seconds per forward pass), peak memory, versions and device.
* ``benchmark.md``: the table in the layout of PaddleSeg's model-zoo READMEs, each number followed by
  its difference to the published one (zoo entries only).
* ``progress/<entry>.jsonl``: one line per scored image (its confusion-matrix increments), appended and
  fsynced, so a killed run continues with ``--resume`` where it stopped, each image counted once.

Examples::

    paddleseg benchmark --zoo all --dataset cityscapes --data_root data/cityscapes
    paddleseg benchmark --zoo pspnet_resnet50_os8_cityscapes_1024x512_80k --limit 50
    paddleseg benchmark --config my.yml --model_path output/iter_1000/model.pdparams --resume

Modules: :mod:`.plan` (targets, settings, how one image's forward passes serve the three columns),
:mod:`.progress` (the resumable per-image records), :mod:`.runner` (scoring and timing),
:mod:`.report` (results, ``benchmark.json``, ``benchmark.md``), :mod:`.environment` (versions, device,
peak memory), :mod:`.cli` (``paddleseg benchmark``), :mod:`.flags` (its flags and ``paddleseg env``'s).
"""
import importlib

# name -> the module defining it; imported on first use, so that importing the light benchmark.flags (the
# command's parser) does not import Paddle
EXPORTS = {'COLUMNS': 'plan', 'ColumnPlan': 'plan', 'Settings': 'plan', 'Target': 'plan', 'weights_target': 'plan',
           'zoo_targets': 'plan', 'PROGRESS_DIR': 'progress', 'ProgressLog': 'progress', 'RESULTS_JSON': 'report',
           'RESULTS_MARKDOWN': 'report', 'markdown': 'report', 'DEFAULT_SAVE_DIR': 'runner', 'ProgressBar': 'runner',
           'ensure_writable_dir': 'runner', 'run': 'runner'}
__all__ = sorted(EXPORTS)


def __getattr__(name):
    """The names of :data:`EXPORTS`, imported from their module on first use."""
    if name in EXPORTS:
        return getattr(importlib.import_module(f'{__name__}.{EXPORTS[name]}'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
