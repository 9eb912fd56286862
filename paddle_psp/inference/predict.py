"""``paddleseg predict``: colour predictions for images (a file, a folder or a list file).

Writes, under ``--save_dir``, ``pseudo_color_prediction/<name>.png`` (a palette PNG whose pixel values are
the class ids, coloured with the dataset's palette) and ``added_prediction/<name>`` (the image blended
0.6 : 0.4 with the colours, as PaddleSeg does). Sub-folders of an input folder are kept.
"""
import argparse
import os

import cv2
import numpy as np
from paddleseg.transforms import Compose
from PIL import Image

from paddle_psp.core.atomic import atomic_path
from paddle_psp.core.errors import UserError
from paddle_psp.core.log import logger
from paddle_psp.data import datasets
from paddle_psp.engine.config import add_config_arguments, load_config
from paddle_psp.inference import tta
from paddle_psp.inference.predictor import fast_forward
from paddle_psp.weights.state_dict import load_for_eval

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')
IMAGE_WEIGHT = 0.6
def list_images(image_path):
    """The images to predict and the folder their output names are relative to.

    Args:
        image_path (str): An image file, a folder (searched recursively) or a list file with one image
            path per line (relative to the list's folder; later columns such as a label are ignored).

    Returns:
        tuple: (list of image paths, base folder or None).

    Raises:
        UserError: The path does not exist or holds no images.
    """
    if os.path.isdir(image_path):
        found = sorted(os.path.join(root, name) for root, dirs, files in os.walk(image_path)
                       for name in files if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith('.'))
        base = image_path
    elif os.path.isfile(image_path) and image_path.lower().endswith(IMAGE_SUFFIXES):
        found, base = [image_path], None
    elif os.path.isfile(image_path):
        base = os.path.dirname(image_path)
        with open(image_path, encoding='utf-8', errors='replace') as file:
            found = [os.path.join(base, line.split()[0]) for line in file if line.strip()]
    else:
        raise UserError(f'--image_path {image_path}: no such file or folder; expected an image, a folder of '
                        'images or a list file')
    if not found:
        raise UserError(f'--image_path {image_path}: no images found; expected {"/".join(IMAGE_SUFFIXES)} '
                        'files or a list file naming them')
    return found, base


def output_name(path, base):
    """The name of ``path``'s outputs: relative to ``base`` when it lies inside, else the file name."""
    if base is not None:
        relative = os.path.relpath(path, base)
        if not relative.startswith('..'):
            return relative
    return os.path.basename(path)


def read_image(path):
    """The image at ``path`` as BGR uint8 (H, W, 3); a UserError if it cannot be read."""
    image = cv2.imread(path, cv2.IMREAD_COLOR) if os.path.isfile(path) else None
    if image is None:
        raise UserError(f'{path}: cannot read this image; expected a readable {"/".join(IMAGE_SUFFIXES)} file')
    return image


def colourize(labels, palette):
    """A palette ('P' mode) PIL image of ``labels`` (class ids)."""
    image = Image.fromarray(labels.astype(np.uint8), mode='P')
    image.putpalette(palette.reshape(-1).tolist())
    return image


def overlay(image_bgr, labels, palette):
    """``image_bgr`` blended with the label colours: 0.6 image + 0.4 colour (BGR uint8)."""
    colours = palette[labels.astype(np.uint8)][:, :, ::-1]
    return cv2.addWeighted(image_bgr, IMAGE_WEIGHT, np.ascontiguousarray(colours), 1 - IMAGE_WEIGHT, 0)


def predict(forward, transforms, image_paths, save_dir, palette, options=tta.InferOptions(), base=None):
    """Predict each image once and write its pseudo-colour PNG and overlay.

    Args:
        forward (callable): ``forward(batch) -> logits`` (see :mod:`paddle_psp.inference.tta`), e.g. ``layer_forward(model)``.
        transforms (list): The val transforms (PaddleSeg transform objects).
        image_paths (list[str]): Images.
        save_dir (str): Output folder.
        palette (np.ndarray): uint8 (256, 3) RGB colours of the class ids.
        options (tta.InferOptions, optional): TTA / sliding window. Default: plain inference.
        base (str, optional): Folder the output names are relative to. Default: None (file names).

    Returns:
        list[str]: The pseudo-colour PNGs written.
    """
    compose = Compose(list(transforms))
    written = []
    for index, path in enumerate(image_paths, 1):
        image = read_image(path)
        sample = compose({'img': image.astype(np.float32), 'trans_info': []})
        labels = tta.infer_labels(forward, sample['img'], sample['trans_info'], options)
        name = output_name(path, base)
        colour_path = os.path.join(save_dir, 'pseudo_color_prediction', os.path.splitext(name)[0] + '.png')
        _save(colour_path, lambda tmp: colourize(labels, palette).save(tmp, format='PNG'))
        added_path = os.path.join(save_dir, 'added_prediction', name)
        _save(added_path, lambda tmp: _imwrite(tmp, os.path.splitext(name)[1], overlay(image, labels, palette)))
        written.append(colour_path)
        logger.info(f'[PREDICT] {index}/{len(image_paths)} {path}')
    return written


def _save(path, write):
    with atomic_path(path) as tmp:
        write(tmp)


def _imwrite(path, suffix, image):
    ok, data = cv2.imencode(suffix or '.png', image)
    if not ok:
        raise OSError(f'{path}: could not encode the overlay image')
    with open(path, 'wb') as file:
        file.write(data.tobytes())


def build_parser():
    """The ``paddleseg predict`` argument parser."""
    parser = argparse.ArgumentParser(
        prog='paddleseg predict', description='Predict images and write pseudo_color_prediction/ (palette '
        'PNGs) and added_prediction/ (overlays) under --save_dir.')
    add_config_arguments(parser, 'YAML config (model and val_dataset transforms)')
    parser.add_argument('--image_path', required=True, help='an image, a folder of images or a list file')
    parser.add_argument('--save_dir', default='./output/result', help='output folder (default ./output/result)')
    parser.add_argument('--opts', nargs='+', default=[], metavar='KEY=VALUE', help='config overrides')
    tta.add_arguments(parser, ('--aug_pred', '--aug_eval'))
    return parser


def main(argv):
    """``paddleseg predict``: returns 0 after writing the predictions."""
    args = build_parser().parse_args(argv)
    cfg = load_config(args.config, opts=args.opts)
    options = tta.options_from_args(args, cfg.test_config)
    image_paths, base = list_images(args.image_path)
    transforms = cfg.val_transforms
    palette = datasets.palette(cfg.section('val_dataset').get('type'))
    model = load_for_eval(cfg.model, args.model_path)
    logger.info(f'[PREDICT] {len(image_paths)} images, {options.summary()}')
    forward = fast_forward(model, fast=not args.dygraph, shapes=options.input_shapes())
    predict(forward, transforms, image_paths, args.save_dir, palette, options, base)
    logger.info(f'[PREDICT] saved in {os.path.join(args.save_dir, "pseudo_color_prediction")} and '
                f'{os.path.join(args.save_dir, "added_prediction")}')
    return 0
