"""What names a fast-path cache entry: the fingerprint of the built model, and the recipe that is its alias.

An entry of the export cache (:mod:`paddle_psp.inference.cache`) is named by the *fingerprint* of the model it
was exported from (:func:`entry_key`): a hash of every tensor of its weights, its layer tree and simple layer
attributes, the source files of its layer classes and of the modules that make an entry, Paddle's version,
and for an int8 entry the calibration batches. Two models with the same fingerprint compute the same
function, so they share one entry. The fingerprint needs the model built and its weights file loaded.

A *recipe* (:func:`recipe_key`) names the same entry by what the model is made of, known before it is built:

* the model section of the config as the model is built from it (:meth:`SegConfig.model_config`, after
  ``_base_``, ``--opts`` and PaddleSeg's built-ins replaced), as sorted JSON;
* the identity of the weights file that ``--model_path`` resolves to (for a folder, URL or zoo name, the file
  :func:`paddle_psp.weights.hub.cached_path` finds; :func:`file_identity`): its real path, size, modification
  and change times, inode and device, so a rewritten, replaced or touched weights file is another recipe;
* the versions of Paddle and PaddleSeg, and a digest of the Python files of the running package and of the
  folders of the classes the model section names;
* for an int8 entry (``--quantize int8``), what its calibration is made of: the algorithm, ``--calib_images``
  N, the train_dataset section with the val transforms, and the identities of the image and label files of
  the first N train samples, so a touched calibration image or another N is another recipe.

The cache's index maps a recipe to the fingerprint a full start computed, with a digest of the source
folders of the model's layer classes as they were then (:func:`source_record`). That alias is followed only
while the digest still holds (:func:`sources_unchanged`), so an edited source is a miss, as is a changed
model section, weights file or version, or another copy of the package sharing the cache. A miss costs a
full start, never a wrong entry: the full start finds its entry by fingerprint.
"""
import hashlib
import inspect
import json
import os

import numpy as np
import paddle
import paddleseg

from paddle_psp.config.registry import lookup_class
from paddle_psp.core.errors import UserError
from paddle_psp.weights import hub

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The modules whose code an entry's files depend on (an edit makes new entries): how an entry is made,
# the Paddle Inference settings its saved program is optimized with, the export and the quantization.
ENTRY_SOURCES = tuple(os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
                      for name in ('entry.py', 'runner.py', 'export.py', 'quantize.py'))


# ------------------------------------------------------------------------------------ the fingerprint

def entry_key(model, calibration=None):
    """The name of ``model``'s cache entry, and the description it was made from (kept in the entry).

    Args:
        model (paddle.nn.Layer): The model, its weights loaded.
        calibration (list, optional): For an int8 entry, its calibration batches (they enter the key).
            Default: None (the fp32 entry).

    Returns:
        tuple: (hex digest, dict describing the inputs of the hash).
    """
    key, description = model_fingerprint(model)
    if calibration is not None:
        digest = hashlib.blake2b(key.encode(), digest_size=16)
        for batch in calibration:
            digest.update(f'{batch.shape};'.encode() + np.ascontiguousarray(batch, np.float32).tobytes())
        key = description['int8_calibration'] = digest.hexdigest()
    return key, description


def model_fingerprint(model):
    """A hash of everything the exported model depends on, and the description it was made from.

    Covers every tensor of the state dict (name, shape, dtype, bytes), the layer tree (``repr``, which
    lists each layer's type and shapes), the public numeric / boolean attributes of every layer (e.g.
    ``align_corners``, ``backbone_indices``), the source files of the layer classes and ``ENTRY_SOURCES``,
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
        'sources': folders_digest(layer_folders([model] + model.sublayers()), files=ENTRY_SOURCES),
        'attributes': {name or '.': _simple_attributes(layer)
                       for name, layer in model.named_sublayers(include_self=True)},
    }
    digest.update(repr(model).encode())
    digest.update(json.dumps(description, sort_keys=True).encode())
    description['weights_and_structure'] = digest.hexdigest()
    return digest.hexdigest(), description


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


# ----------------------------------------------------------------------------------------- the recipe

def recipe_key(cfg, weights_path, calibration=None):
    """The recipe of the entry of ``cfg``'s model with the weights file ``weights_path``: a hex digest.

    Args:
        cfg (paddle_psp.config.SegConfig): The loaded config.
        weights_path (str): What ``--model_path`` takes: a weights file, a folder holding one, a URL or a
            zoo name.
        calibration (dict, optional): For the int8 entry, what its calibration is made of
            (:func:`paddle_psp.inference.quantize.calibration_recipe`): its ``files`` enter as their
            identities (:func:`file_identity`), the rest as it is. Default: None (the fp32 entry).

    Returns:
        str: The digest, or None when the weights file is not on disk yet (a download), ``weights_path`` is
        not valid or a calibration file is missing (the full start reports it).
    """
    weights_file = file_identity(hub.cached_path(weights_path))
    if weights_file is None:
        return None
    model_cfg = cfg.model_config(pretrained=False)
    try:
        folders = package_folders() | component_folders(model_cfg, 'model', cfg.path)
    except UserError:  # an unknown type: the full start reports it
        return None
    facts = {
        'model': model_cfg,
        'sources': folders_digest(sorted(folders)),
        'weights_file': weights_file,
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


# ------------------------------------------------------------------------------------ source digests

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
