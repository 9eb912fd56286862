"""``paddleseg predict``: colour predictions for images (a file, a folder or a list file).

Writes, under ``--save_dir``, ``pseudo_color_prediction/<name>.png`` (a palette PNG whose pixel values are
the class ids, coloured with the dataset's palette) and ``added_prediction/<name>`` (the image blended
0.6 : 0.4 with the colours, as PaddleSeg does). Sub-folders of an input folder are kept. With
``--submission cityscapes|voc`` it writes a test server's files instead (:mod:`paddle_psp.inference.submission`).

:func:`image_logits` is the one way an image is inferred here; ``paddle_psp.Segmenter`` calls it too.
"""
import os

import cv2
import numpy as np
from paddleseg.transforms import Compose
from PIL import Image

from paddle_psp.core.atomic import atomic_path
from paddle_psp.core.device import use_device
from paddle_psp.core.errors import UserError
from paddle_psp.core.log import log_file, logger
from paddle_psp.core.outputs import require_dir
from paddle_psp.core.console import Progress, lines_every
from paddle_psp.data import datasets
from paddle_psp.config import load_config
from paddle_psp.inference import submission, tta
from paddle_psp.inference.flags import predict_parser
from paddle_psp.inference.forward import ForwardOptions, make_forward
from paddle_psp.core.stages import Stages

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')
PREDICT_LOG = 'predict.log'
IMAGE_WEIGHT = 0.6
def list_images(image_path, key='--image_path'):
    """The images to predict and the folder their output names are relative to.

    Args:
        image_path (str): An image file, a folder (searched recursively) or a list file with one image
            path per line (relative to the list's folder; later columns such as a label are ignored); in
            VOC's ``ImageSets/Segmentation/*.txt`` lists, image ids name ``JPEGImages/<id>.jpg``.
        key (str, optional): What gave ``image_path``, named in errors. Default: '--image_path'.

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
            found = [_listed_image(base, line.split()[0]) for line in file if line.strip()]
    else:
        raise UserError(f'{key} {image_path}: no such file or folder; expected an image, a folder of '
                        'images or a list file')
    if not found:
        raise UserError(f'{key} {image_path}: no images found; expected {"/".join(IMAGE_SUFFIXES)} '
                        'files or a list file naming them')
    return found, base


def _listed_image(base, entry):
    """The image a list file in ``base`` names with ``entry``: a path relative to ``base``, or in a VOC
    ``ImageSets/Segmentation`` list an image id (``2008_000006``: ``JPEGImages/2008_000006.jpg``)."""
    if not entry.lower().endswith(IMAGE_SUFFIXES) and \
            os.path.normpath(base).endswith(os.path.join('ImageSets', 'Segmentation')):
        return os.path.join(os.path.dirname(os.path.dirname(base)), 'JPEGImages', entry + '.jpg')
    return os.path.join(base, entry)


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


def transformed(compose, image):
    """``image`` (BGR uint8 (H, W, 3)) through the val transforms: ``(CHW float32 image, trans_info)``."""
    sample = compose({'img': image.astype(np.float32), 'trans_info': []})
    return sample['img'], sample['trans_info']


def image_logits(forward, compose, image, options=tta.InferOptions()):
    """The class scores of one image at its original size, as ``paddleseg predict`` and ``val`` infer them.

    Args:
        forward (callable): ``forward(batch) -> logits`` (see :mod:`paddle_psp.inference.tta`).
        compose (paddleseg.transforms.Compose): The val transforms.
        image (np.ndarray): BGR uint8 (H, W, 3), as ``cv2.imread`` reads it.
        options (tta.InferOptions, optional): TTA / sliding window. Default: plain inference.

    Returns:
        np.ndarray: float32 (classes, H, W); :func:`tta.labels_of` gives the class map.
    """
    img, trans_info = transformed(compose, image)
    return tta.infer_logits(forward, img, trans_info, options)


def predict(forward, transforms, image_paths, save_dir, palette, options=tta.InferOptions(), base=None,
            submission_format=None):
    """Predict each image once and write its pseudo-colour PNG and overlay (or its submission PNG).

    Args:
        forward (callable): ``forward(batch) -> logits`` (see :mod:`paddle_psp.inference.tta`), e.g.
            ``layer_forward(model)``.
        transforms (list): The val transforms (PaddleSeg transform objects).
        image_paths (list[str]): Images.
        save_dir (str): Output folder.
        palette (np.ndarray): uint8 (256, 3) RGB colours of the class ids.
        options (tta.InferOptions, optional): TTA / sliding window. Default: plain inference.
        base (str, optional): Folder the output names are relative to. Default: None (file names).
        submission_format (submission.Format, optional): Write the test server's PNGs and archive instead
            (see :mod:`paddle_psp.inference.submission`). Default: None.

    Returns:
        list[str]: The pseudo-colour PNGs written (with ``submission_format``: the server PNGs, then the
        archive).
    """
    compose = Compose(list(transforms))
    names = submission.output_names(submission_format, image_paths) if submission_format else None
    written = []
    with Progress('predicting', len(image_paths), every=lines_every(len(image_paths)), unit='image',
                  log_prefix='[PREDICT] ') as progress:
        for index, path in enumerate(image_paths):
            image = read_image(path)
            labels = tta.labels_of(image_logits(forward, compose, image, options))
            if submission_format:
                written.append(os.path.join(save_dir, names[index]))
                submission.write_png(submission_format, written[-1], labels)
            else:
                written.append(_write_colour(save_dir, output_name(path, base), image, labels, palette))
            logger.debug(f'[PREDICT] {path} -> {written[-1]}')
            progress.advance()
    if submission_format:
        written.append(submission.write_archive(submission_format, save_dir, names))
    return written


def _write_colour(save_dir, name, image, labels, palette):
    """Write the pseudo-colour PNG and overlay of one image; returns the PNG's path."""
    colour_path = os.path.join(save_dir, 'pseudo_color_prediction', os.path.splitext(name)[0] + '.png')
    _save(colour_path, lambda tmp: colourize(labels, palette).save(tmp, format='PNG'))
    added_path = os.path.join(save_dir, 'added_prediction', name)
    _save(added_path, lambda tmp: _imwrite(tmp, os.path.splitext(name)[1], overlay(image, labels, palette)))
    return colour_path


def _save(path, write):
    with atomic_path(path) as tmp:
        write(tmp)


def _imwrite(path, suffix, image):
    ok, data = cv2.imencode(suffix or '.png', image)
    if not ok:
        raise OSError(f'{path}: could not encode the overlay image')
    with open(path, 'wb') as file:
        file.write(data.tobytes())


def custom_palette(palette, custom_color):
    """``palette`` with its first colours replaced by ``--custom_color`` (R G B per class, as in PaddleSeg).

    Raises:
        UserError: The values are not RGB triplets of 0..255.
    """
    values = np.asarray(custom_color, np.int64)
    if values.size % 3 or values.size // 3 > len(palette) or values.min() < 0 or values.max() > 255:
        raise UserError(f'--custom_color {" ".join(map(str, custom_color))}: expected R G B triplets of 0..255, '
                        f'one per class from class 0 (at most {len(palette)})')
    palette = np.array(palette, np.uint8)
    palette[:values.size // 3] = values.reshape(-1, 3)
    return palette


def main(argv):
    """``paddleseg predict``: returns 0 after writing the predictions (and the log lines, to ``predict.log``)."""
    args = predict_parser().parse_args(argv)
    with log_file(os.path.join(args.save_dir, PREDICT_LOG), when_done=True):
        return _run(args)


def _run(args):
    """``paddleseg predict`` with parsed flags."""
    stages = Stages(enabled=args.profile)
    stages.mark('imports')
    use_device(args.device)
    require_dir(args.save_dir, 'a folder for the predictions', '--save_dir')
    cfg = load_config(args.config, opts=args.opts)
    options = tta.options_from_args(args, cfg.test_config)
    image_paths, base = list_images(args.image_path)
    found = check_outputs(args, cfg, image_paths)
    palette = datasets.palette(cfg.section('val_dataset').get('type'))
    if args.custom_color:
        palette = custom_palette(palette, args.custom_color)
    stages.mark('config')
    forward = make_forward(cfg, args.model_path, ForwardOptions.from_args(args, options.input_shapes()), stages)
    logger.info(f'[PREDICT] {len(image_paths)} images, {options.summary()}')
    written = predict(forward, cfg.val_transforms, image_paths, args.save_dir, palette, options, base, found)
    if args.profile:
        logger.info(f'[PREDICT] start-up: {stages.summary()}')
    if found:
        logger.info(f'[PREDICT] {found.name} submission of {len(image_paths)} images: {written[-1]}')
    else:
        logger.info(f'[PREDICT] saved in {os.path.join(args.save_dir, "pseudo_color_prediction")} and '
                    f'{os.path.join(args.save_dir, "added_prediction")}')
    return 0


def check_outputs(args, cfg, image_paths):
    """Check the output folders under ``--save_dir`` (and a ``--submission``'s names) before any work.

    Returns:
        submission.Format|None: The ``--submission`` format.
    """
    if args.submission is None:
        for folder in ('pseudo_color_prediction', 'added_prediction'):
            require_dir(os.path.join(args.save_dir, folder), 'a folder for the predictions')
        return None
    found = submission.get_format(args.submission, cfg.num_classes)
    require_dir(os.path.join(args.save_dir, found.folder), f'a folder for the {found.name} submission')
    submission.output_names(found, image_paths)
    return found
