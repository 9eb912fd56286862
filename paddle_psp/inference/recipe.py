"""Recipes: a cached export found from what it is made of, without building the model or reading the checkpoint.

An export's cache key (:func:`paddle_psp.inference.predictor.model_fingerprint`) hashes the model's weights
and structure (and, for int8, the calibration images after the transforms), so it needs the model built and
its checkpoint loaded: seconds for ResNet-50. A *recipe* names the same export by what produced it
(:func:`recipe_key`):

* the model section of the config as the model is built from it (:meth:`SegConfig.model_config`, after
  ``_base_``, ``--opts`` and PaddleSeg's built-ins replaced), as sorted JSON;
* the identity of the checkpoint file that loading ``--model_path`` reads (for a folder, URL or zoo name,
  the file :func:`paddle_psp.weights.hub.cached_path` finds): its real path, size, modification and change
  times, inode and device, so a rewritten, replaced or touched checkpoint is another recipe;
* the versions of Paddle and PaddleSeg, and a digest of the Python files of the running package and of the
  folders of the classes the model section names;
* for an int8 export (``--quantize int8``), what its calibration is made of: the algorithm, ``--calib_images``
  N, the train_dataset section with the val transforms, and the identities (as the checkpoint's) of the image
  and label files of the first N train samples, so a touched calibration image or another N is another recipe.

The cache's index maps a recipe to the key a full start computed from it, with a digest of the source
folders of the model's layer classes as they were then (:func:`source_record`). The shortcut is taken only
while that digest still holds (:func:`sources_unchanged`), so an edited source is a miss, as is a changed
model section, checkpoint or version, or another copy of the package sharing the cache.
"""
import hashlib
import inspect
import json
import os

import paddle
import paddleseg

from paddle_psp.config.registry import lookup_class
from paddle_psp.core.errors import UserError
from paddle_psp.weights import hub

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def recipe_key(cfg, model_path, calibration=None):
    """A hex digest of what the fast path's export of ``cfg``'s model with ``model_path`` is made of.

    Args:
        cfg (paddle_psp.config.SegConfig): The loaded config.
        model_path (str): Checkpoint: a file, a folder holding one, a URL or a zoo name.
        calibration (dict, optional): For the int8 export, what its calibration is made of
            (:func:`paddle_psp.inference.quantize.calibration_recipe`): its ``files`` enter as their
            identities (:func:`file_identity`), the rest as it is. Default: None (the fp32 export).

    Returns:
        str: The digest, or None when the checkpoint is not on disk yet (a download), ``model_path`` is
        not valid or a calibration file is missing (the full start reports it).
    """
    checkpoint = file_identity(hub.cached_path(model_path))
    if checkpoint is None:
        return None
    model_cfg = cfg.model_config(pretrained=False)
    try:
        folders = package_folders() | component_folders(model_cfg, 'model', cfg.path)
    except UserError:  # an unknown type: the full start reports it
        return None
    facts = {
        'model': model_cfg,
        'sources': folders_digest(sorted(folders)),
        'checkpoint': checkpoint,
        'paddle': paddle.__version__,
        'paddleseg': paddleseg.__version__,
    }
    if calibration is not None:
        facts['calibration'] = dict(calibration, files=[file_identity(path) for path in calibration['files']])
        if None in facts['calibration']['files']:
            return None
    text = json.dumps(facts, sort_keys=True, default=repr)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def file_identity(path):
    """What tells file ``path`` from a rewritten, replaced or touched one: its real path, size, modification
    and change times, inode and device; None when ``path`` is None or gone."""
    try:
        stat = os.stat(path) if path else None
    except OSError:  # gone meanwhile
        stat = None
    if stat is None:
        return None
    return [os.path.realpath(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]


def source_record(layers):
    """What the index keeps beside a recipe's key: the source folders of ``layers``' classes and their
    digest (:func:`folders_digest`)."""
    folders = sorted(layer_folders(layers))
    return {'sources': folders, 'source_digest': folders_digest(folders)}


def sources_unchanged(record):
    """Whether the Python files of the folders ``record`` names (:func:`source_record`) are as they were."""
    try:
        return folders_digest(record['sources']) == record['source_digest']
    except (OSError, KeyError, TypeError):
        return False


def layer_folders(layers):
    """The folders of the source files defining the classes of ``layers``, except Paddle's own (its
    version covers them)."""
    ours = {type(layer) for layer in layers if not type(layer).__module__.startswith('paddle.')}
    return {os.path.dirname(path) for path in map(inspect.getsourcefile, ours) if path}


def component_folders(node, keypath, path):
    """The source folders of the classes that component dict ``node`` and the components nested in it name
    (their ``type``), except Paddle's own.

    Raises:
        UserError: A ``type`` names no registered class.
    """
    folders = set()
    if isinstance(node, dict):
        if 'type' in node:
            component = lookup_class(node['type'], keypath, path)
            if not component.__module__.startswith('paddle.'):
                folders |= {os.path.dirname(inspect.getsourcefile(component) or '')} - {''}
        for key, value in node.items():
            folders |= component_folders(value, f'{keypath}.{key}', path)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            folders |= component_folders(value, f'{keypath}.{index}', path)
    return folders


def package_folders():
    """Every folder of this package that holds Python files."""
    return {folder for folder, _, names in os.walk(PACKAGE) if any(name.endswith('.py') for name in names)}


def folders_digest(folders, files=()):
    """A hash of the contents of ``files`` and of the Python files directly in ``folders`` (in the order of
    their paths, which it leaves out: the same sources elsewhere give the same hash)."""
    paths = set(files)
    for folder in folders:
        paths |= {os.path.join(folder, name) for name in os.listdir(folder) if name.endswith('.py')}
    digest = hashlib.blake2b(digest_size=8)
    for path in sorted(filter(None, paths)):
        with open(path, 'rb') as handle:
            digest.update(handle.read())
    return digest.hexdigest()
