"""Shipped configs by name: ``--config`` takes a path to a YAML file or the name of a config shipped with paddle-psp.

The configs' source is ``configs/`` at the top of the repository. An installed package (a wheel or
``pip install .``) carries a copy in ``paddle_psp/configs/``, written at build time by ``setup.py``; a source
checkout (``pip install -e .``) reads ``configs/`` itself. A config's name is its file name without
``.yml`` (``pspnet_resnet50_os8_cityscapes_1024x512_80k``); ``quickstart`` names the quickstart config.

Standard library only (no Paddle), so that the parsers can resolve ``--config`` before any work starts.
"""
import argparse
import os

from paddle_psp.core.errors import close_matches

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # paddle_psp/
PACKAGE_CONFIGS = os.path.join(PACKAGE_DIR, 'configs')
CHECKOUT_CONFIGS = os.path.join(os.path.dirname(PACKAGE_DIR), 'configs')
CHECKOUT_MARKER = os.path.join(os.path.dirname(PACKAGE_DIR), 'setup.py')
BASE_FOLDER = '_base_'
ALIASES = {'quickstart': 'pspnet_resnet50_os8_synthcity_quickstart'}
YAML_SUFFIXES = ('.yml', '.yaml')


def configs_root():
    """The folder holding the shipped configs (``cityscapes/``, ``voc12aug/``, ``quickstart/``, ``_base_/``).

    Returns:
        str|None: the package's copy when installed, else the checkout's ``configs/``; None when neither
        exists.
    """
    if os.path.isdir(PACKAGE_CONFIGS):
        return PACKAGE_CONFIGS
    if os.path.isfile(CHECKOUT_MARKER) and os.path.isdir(CHECKOUT_CONFIGS):
        return CHECKOUT_CONFIGS
    return None


def shipped_configs(root=None):
    """Every shipped config by name (``_base_`` files are not configs of their own).

    Args:
        root (str, optional): a configs folder; default :func:`configs_root`.

    Returns:
        dict[str, str]: name -> absolute path, sorted by name; aliases (``quickstart``) included.
    """
    root = configs_root() if root is None else root
    found = {}
    if root is None:
        return found
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(s for s in subfolders if s != BASE_FOLDER)
        for file in files:
            stem, suffix = os.path.splitext(file)
            if suffix in YAML_SUFFIXES:
                found[stem] = os.path.join(folder, file)
    for alias, name in ALIASES.items():
        if name in found:
            found[alias] = found[name]
    return dict(sorted(found.items()))


def resolve(value):
    """The path of a config given by path or by name.

    An existing file is itself. A value without a folder and without a ``.yml`` suffix is a name. A relative
    ``configs/...`` path that does not exist here is looked up among the shipped configs (so the commands in
    the docs run from any folder). Anything else is returned unchanged, for the config reader to report.

    Args:
        value (str): what the user gave ``--config``.

    Returns:
        str: a path.

    Raises:
        ValueError: a name that is no shipped config; the message suggests close names.
    """
    if os.path.exists(value):
        return value
    parts = value.replace('\\', '/').split('/')
    if len(parts) == 1 and not value.endswith(YAML_SUFFIXES):
        return _by_name(value)
    root = configs_root()
    if parts[0] == 'configs' and root is not None and not os.path.isabs(value):
        shipped = os.path.join(root, *parts[1:])
        if os.path.isfile(shipped):
            return shipped
    return value


def _by_name(name):
    """The path of the shipped config ``name``, or a ValueError with close names."""
    known = shipped_configs()
    if name in known:
        return known[name]
    if not known:
        raise ValueError(f'{name!r}: no such file, and this installation ships no configs; expected a path to a '
                         '.yml config')
    hint = close_matches(name, list(known)) or [n for n in known if n.split('_')[0] == name.split('_')[0]][:4]
    suggestion = f'did you mean {", ".join(hint)}?' if hint else 'see paddleseg models for the names'
    raise ValueError(f'{name!r}: no such file or config name; {suggestion} (or a path to a .yml config)')


def config_argument(value):
    """argparse ``type`` of ``--config``: :func:`resolve`, its error as argparse's one-line error."""
    try:
        return resolve(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
