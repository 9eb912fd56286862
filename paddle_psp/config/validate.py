"""Checks of a config before anything heavy is built, and of a dataset's files before PaddleSeg reads them.

Each check raises a one-line :class:`paddle_psp.core.errors.UserError` naming the file and key.
"""
import copy
import os

from PIL import Image

from paddle_psp.config.registry import close_matches, component_class, constructor_params
from paddle_psp.core.errors import UserError
from paddle_psp.data.datasets import PREPARED_LAYOUTS, dataset_kind, unpaired_cityscapes_frame

TRAIN_KEYS = ('batch_size', 'iters', 'model', 'train_dataset', 'optimizer', 'lr_scheduler', 'loss')
KNOWN_TOP_LEVEL = set(TRAIN_KEYS) | {'val_dataset', 'test_config', 'export', 'distill_loss', 'to_static_training'}
# Transform (and test_config) arguments that are sizes in pixels: positive where given as numbers.
SIZE_KEYS = frozenset({'crop_size', 'target_size', 'size', 'long_size', 'short_size', 'max_long', 'min_long',
                       'min_value', 'max_value', 'stride', 'min_scale_factor', 'max_scale_factor'})


def validate(dic, path):
    """Check ``dic`` without building anything heavy: numbers, every ``type``, constructor arguments, loss."""
    if not isinstance(dic.get('model'), dict):
        raise UserError(f'{path}: model: missing; expected a model section with a type')
    for key in ('batch_size', 'iters'):
        if key in dic and not (isinstance(dic[key], int) and not isinstance(dic[key], bool) and dic[key] > 0):
            raise UserError(f'{path}: {key}: expected a positive integer, got {dic[key]!r}')
    if not isinstance(dic.get('to_static_training', False), bool):
        raise UserError(f'{path}: to_static_training: expected true or false, got {dic["to_static_training"]!r}')
    for key in ('model', 'train_dataset', 'val_dataset', 'optimizer', 'lr_scheduler', 'loss'):
        if key in dic and not isinstance(dic[key], dict):
            raise UserError(f'{path}: {key}: expected a section (key: value lines), got {dic[key]!r}')
        if key in dic and key != 'loss' and 'type' not in dic[key]:
            raise UserError(f'{path}: {key}.type: missing; expected the name of a registered component')
    for key in sorted(set(dic) - KNOWN_TOP_LEVEL, key=str):
        hint = close_matches(key, sorted(KNOWN_TOP_LEVEL), 3)
        raise UserError(f'{path}: {key}: not a key PaddleSeg configs use; '
                        + (f'did you mean {", ".join(hint)}?' if hint else
                           f'expected one of {", ".join(sorted(KNOWN_TOP_LEVEL))}'))
    check_types(dic, path)
    check_loss(dic, path)
    check_num_classes(dic, path)
    check_sizes(dic, path)


def check_num_classes(dic, path):
    """``model.num_classes``, when given, equals the classes of every dataset section that defines them."""
    model_classes = dic['model'].get('num_classes')
    for key in ('train_dataset', 'val_dataset'):
        section = dic.get(key)
        if model_classes is None or not section:
            continue
        dataset_classes = section.get('num_classes',
                                      getattr(component_class(section, key, path), 'NUM_CLASSES', None))
        if dataset_classes is not None and dataset_classes != model_classes:
            raise UserError(f'{path}: model.num_classes: {model_classes} but {key} ({section["type"]}) has '
                            f'{dataset_classes} classes; expected {dataset_classes} (or leave it out)')


def check_sizes(dic, path):
    """Every size-like argument (``crop_size``, ``target_size``, ...) given as numbers is positive."""
    for keypath, node in sections(dic):
        for key, value in node.items():
            numbers = value if isinstance(value, (list, tuple)) else [value]
            if key in SIZE_KEYS and any(isinstance(n, (int, float)) and not isinstance(n, bool) and n <= 0
                                        for n in numbers):
                raise UserError(f'{path}: {keypath + "." if keypath else ""}{key}: {value!r}; expected positive sizes')


def check_types(dic, path):
    """Every ``type`` names a registered component and every sibling key is one of its arguments."""
    for keypath, node in sections(dic):
        if 'type' not in node:
            continue
        params = constructor_params(component_class(node, keypath, path))
        ignored = {'type', 'warmup_iters', 'warmup_start_lr'} if keypath == 'lr_scheduler' else {'type'}
        for key in node:
            if params is not None and key not in params and key not in ignored:
                hint = close_matches(key, sorted(params), 3)
                raise UserError(f'{path}: {keypath}.{key}: not an argument of {node["type"]}; '
                                + (f'did you mean {", ".join(hint)}?' if hint else
                                   f'expected one of {", ".join(sorted(params))}'))


def sections(node, keypath=''):
    """``(key path, dict)`` of every mapping in a config tree, outer ones first (list items by index)."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from sections(item, f'{keypath}.{index}')
    elif isinstance(node, dict):
        yield keypath, node
        for key, value in node.items():
            yield from sections(value, f'{keypath}.{key}' if keypath else str(key))



def check_loss(dic, path):
    """``loss.types`` has one entry or one per ``coef``; a single type is repeated (PaddleSeg's rule)."""
    loss = dic.get('loss')
    if loss is None:
        return
    types, coef = loss.get('types'), loss.get('coef')
    if not isinstance(types, list) or not types or not all(isinstance(t, dict) for t in types):
        raise UserError(f'{path}: loss.types: expected a list of losses (each with a type), got {types!r}')
    if not isinstance(coef, list) or not all(isinstance(c, (int, float)) for c in coef):
        raise UserError(f'{path}: loss.coef: expected a list of numbers (one per model output), got {coef!r}')
    if len(types) == 1 and len(coef) > 1:
        loss['types'] = [copy.deepcopy(types[0]) for _ in coef]
    elif len(types) != len(coef):
        raise UserError(f'{path}: loss: {len(types)} types but {len(coef)} coef; expected one type or '
                        'one per coef')


# --------------------------------------------------------------------------------- a dataset's files
def check_dataset_root(dataset_cfg, key, path):
    """A UserError saying how to prepare the dataset when ``dataset_root`` lacks it (before PaddleSeg,
    whose PascalVOC would start a download)."""
    root = dataset_cfg.get('dataset_root')
    folders, command = PREPARED_LAYOUTS.get(dataset_cfg.get('type'), ((), 'paddleseg prepare --help'))
    if root is None:
        raise UserError(f'{path}: {key}.dataset_root: missing; expected the dataset folder')
    missing = [f for f in folders if not os.path.isdir(os.path.join(root, f))]
    if not os.path.isdir(root) or missing:
        what = 'does not exist' if not os.path.isdir(root) else f'has no {missing[0]}/ folder'
        raise UserError(f'{path}: {key}.dataset_root: {root} {what}; prepare the dataset with '
                        f'`{command.format(root=root)}` or set --opts {key}.dataset_root=DIR')


def check_file_list(dataset, key):
    """Every listed image and label exists, has the size of its partner (read from the file headers, so
    cheaply), and (Cityscapes) every image has its label and vice versa."""
    if dataset_kind(dataset) == 'Cityscapes':
        check_cityscapes_pairs(dataset.dataset_root, dataset.mode, key)
    for image_path, label_path in getattr(dataset, 'file_list', []):
        for file_path in (image_path, label_path):
            if file_path is not None and not os.path.isfile(file_path):
                raise UserError(f'{file_path}: listed in {key} but missing; expected the image/label file')
        if label_path is not None:
            check_same_size(image_path, label_path)


def check_same_size(image_path, label_path):
    """A UserError naming ``label_path`` unless it has the width and height of ``image_path``; files that
    cannot be read are left to the loader, which names them."""
    try:
        with Image.open(image_path) as image, Image.open(label_path) as label:
            image_size, label_size = image.size, label.size
    except (OSError, SyntaxError):
        return
    if image_size != label_size:
        raise UserError(f'{label_path}: label is {label_size[0]}x{label_size[1]} but its image {image_path} is '
                        f'{image_size[0]}x{image_size[1]}; expected a label of the same size as its image')


def check_cityscapes_pairs(root, mode, key):
    """PaddleSeg pairs sorted image and label lists blindly; name the first file without its partner."""
    unpaired = unpaired_cityscapes_frame(root, mode)
    if unpaired is not None:
        present, lacks, missing = unpaired
        raise UserError(f'{present}: has no {lacks} in {key} ({missing} is missing); expected '
                        'one *_gtFine_labelTrainIds.png per *_leftImg8bit.png')
