"""PaddleSeg YAML configs: read (``_base_`` inheritance), override (flags, ``--opts``), validate, build.

Every problem a user can cause becomes a one-line :class:`paddle_psp.core.errors.UserError` naming the file and
key: a missing or malformed file, an unknown ``type`` (with close matches), an unknown ``--opts`` key, a
missing dataset root (with the command that prepares it), a batch size larger than the dataset.

Modules, in the order a config goes through them: :mod:`.read`, :mod:`.overrides`, :mod:`.validate`
(with :mod:`.registry`: which class a ``type`` names), :mod:`.build`.

Example:
    cfg = load_config('configs/cityscapes/pspnet_resnet50_os8_cityscapes_1024x512_80k.yml',
                      opts=['train_dataset.dataset_root=data/cityscapes'], iters=1000)
    model, optimizer = cfg.model, cfg.optimizer
"""
import os

from paddle_psp.config.build import SegConfig, build_component, build_val_dataset
from paddle_psp.config.overrides import apply_data_format, apply_opts, apply_overrides, check_repeats
from paddle_psp.config.read import read_yaml_tree
from paddle_psp.config.validate import validate

__all__ = ['SegConfig', 'build_component', 'build_val_dataset', 'load_config']


def load_config(path, opts=None, learning_rate=None, batch_size=None, iters=None, data_format=None, repeats=None):
    """Read, merge, override and validate the config at ``path``.

    Args:
        path (str): A ``.yml``/``.yaml`` file; ``_base_`` files are relative to the file naming them.
        opts (list[str], optional): ``key.sub=value`` overrides (list items by index: ``a.transforms.0.x=1``);
            values are Python/YAML literals. An unknown key is an error. Default: None.
        learning_rate (float, optional): Overrides ``lr_scheduler.learning_rate``. Default: None.
        batch_size (int, optional): Overrides ``batch_size`` (per device). Default: None.
        iters (int, optional): Overrides ``iters``. Default: None.
        data_format (str, optional): ``--data_format``: 'NHWC' passes ``data_format`` to the model, its
            backbone and every loss (see :func:`~paddle_psp.config.overrides.apply_data_format`). Default: None.
        repeats (int, optional): ``--repeats``: passes over the training images per epoch (the training
            dataset's file list repeated, see :func:`~paddle_psp.config.overrides.apply_repeats`). Default: None.

    Returns:
        SegConfig: The validated config; components are built on first access.

    Raises:
        UserError: One line naming the file or key that is wrong.
    """
    path = os.fspath(path)
    check_repeats(repeats)
    dic = read_yaml_tree(path)
    apply_overrides(dic, path, learning_rate=learning_rate, batch_size=batch_size, iters=iters)
    apply_opts(dic, path, opts or [])
    apply_data_format(dic, path, data_format)
    validate(dic, path)
    return SegConfig(dic, path, repeats=repeats)

