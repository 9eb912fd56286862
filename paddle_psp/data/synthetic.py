"""A small deterministic street-scene dataset in Cityscapes layout, for the quickstart and the tests.

Each image is a toy street: sky above a skyline of buildings, trees, a road with cars, and an ego-vehicle
band at the bottom labelled 255 (ignored), like Cityscapes. Classes use Cityscapes train ids, so
PaddleSeg's ``Cityscapes`` dataset (19 classes) reads it unchanged. Colours are noisy and vary per image,
so a network has to use shape and context, not a colour lookup.
"""
import json
import os

import cv2
import numpy as np

from paddle_psp.core.atomic import atomic_path, write_text
from paddle_psp.data.datasets import (CITYSCAPES_CLASSES, CITYSCAPES_COLOURS, CITYSCAPES_IMAGES, CITYSCAPES_LABELS,
                                      IGNORE_INDEX, IMAGE_SUFFIX, TRAIN_IDS_SUFFIX)

CITY = 'synthcity'
# train id -> (name, base RGB colour): road, building, vegetation, sky, car
CLASSES = {i: (CITYSCAPES_CLASSES[i], CITYSCAPES_COLOURS[i]) for i in (0, 2, 8, 10, 13)}


def make_cityscapes_like(root, num_train=24, num_val=8, size=(256, 128), seed=0):
    """Write the dataset under ``root`` (skipped when the same one is already there).

    Args:
        root (str): Dataset root; ``leftImg8bit/`` and ``gtFine/`` are created in it.
        num_train (int, optional): Training images. Default: 24.
        num_val (int, optional): Validation images. Default: 8.
        size (tuple, optional): (width, height). Default: (256, 128).
        seed (int, optional): Seed; the same arguments give the same files. Default: 0.

    Returns:
        str: ``root``.
    """
    spec = {'num_train': num_train, 'num_val': num_val, 'size': list(size), 'seed': seed, 'version': 1}
    stamp = os.path.join(root, 'synthetic.json')
    if os.path.exists(stamp) and json.load(open(stamp)) == spec:
        return root
    rng = np.random.RandomState(seed)
    for mode, count in (('train', num_train), ('val', num_val)):
        for index in range(count):
            image, label = draw_scene(rng, size)
            stem = f'{CITY}_{index:06d}_000019'
            _write_png(os.path.join(root, CITYSCAPES_IMAGES, mode, CITY, stem + IMAGE_SUFFIX),
                       cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            _write_png(os.path.join(root, CITYSCAPES_LABELS, mode, CITY, stem + TRAIN_IDS_SUFFIX), label)
    write_text(stamp, json.dumps(spec))
    return root


def draw_scene(rng, size):
    """One (RGB uint8 HxWx3 image, uint8 HxW label) pair."""
    width, height = size
    label = np.full((height, width), 10, np.uint8)  # sky
    horizon = int(height * rng.uniform(0.45, 0.6))
    x = 0
    while x < width:  # skyline of buildings and trees
        step = int(rng.uniform(0.08, 0.25) * width)
        top = int(height * rng.uniform(0.1, 0.4))
        cls = 2 if rng.rand() < 0.65 else 8
        if cls == 2:
            label[top:horizon, x:x + step] = 2
        else:
            cv2.ellipse(label, (x + step // 2, (top + horizon) // 2), (step // 2, (horizon - top) // 2),
                        0, 0, 360, 8, -1)
            label[(top + horizon) // 2:horizon, x + step // 2 - 1:x + step // 2 + 2] = 8
        x += step
    label[horizon:] = 0  # road
    for _ in range(rng.randint(1, 4)):  # cars on the road
        car_w = int(width * rng.uniform(0.1, 0.2))
        car_h = int(car_w * rng.uniform(0.4, 0.6))
        cx = rng.randint(0, width - car_w)
        cy = rng.randint(horizon - car_h // 2, max(horizon, int(height * 0.85) - car_h) + 1)
        label[cy:cy + car_h, cx:cx + car_w] = 13
    label[int(height * 0.92):] = IGNORE_INDEX  # ego vehicle
    return _paint(rng, label), label


def _paint(rng, label):
    """Colour each class with a per-image tint plus pixel noise."""
    image = np.zeros(label.shape + (3,), np.float32)
    for cls, (_, colour) in CLASSES.items():
        tint = np.array(colour, np.float32) + rng.uniform(-25, 25, 3)
        image[label == cls] = tint
    image[label == IGNORE_INDEX] = (20, 20, 20)
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _write_png(path, array):
    with atomic_path(path) as tmp:
        if not cv2.imwrite(tmp + '.png', array):
            raise OSError(f'{path}: could not write PNG')
        os.replace(tmp + '.png', tmp)
