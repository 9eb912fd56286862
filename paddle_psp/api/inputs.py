"""What :meth:`paddle_psp.api.Segmenter.predict` accepts, turned into BGR images: file paths, folders, list
files, ``numpy`` arrays, PIL images, or lists of these.

Every problem is a :class:`paddle_psp.core.errors.UserError` naming what was given and what is expected,
raised before any image is predicted.
"""
import os

import numpy as np
from PIL import Image

from paddle_psp.core.errors import UserError
from paddle_psp.inference.predict import list_images, read_image

EXPECTED = ('expected an image file path, a folder or list file of images, a numpy uint8 array of shape '
            '(H, W, 3), an RGB PIL image, or a list of these')


class Source:
    """One image to predict: read lazily from ``path``, or held as an array.

    Attributes:
        path (str|None): The file, or None for an array.
        array (np.ndarray|None): BGR uint8 (H, W, 3) for an array input.
    """

    def __init__(self, path=None, array=None):
        self.path, self.array = path, array

    def bgr(self):
        """The image as BGR uint8 (H, W, 3)."""
        return self.array if self.array is not None else read_image(self.path)


def sources(images, rgb=False):
    """The images ``images`` names, and whether it named exactly one (so one prediction is returned).

    Args:
        images (str|os.PathLike|np.ndarray|PIL.Image.Image|list|tuple): A path (an image, a folder searched
            recursively, or a list file), an array, an RGB PIL image, or a non-empty list / tuple of these.
        rgb (bool, optional): Arrays are RGB (as matplotlib gives them) instead of BGR (as OpenCV reads
            them). Default: False.

    Returns:
        tuple: (list[Source], single (bool)).

    Raises:
        UserError: An empty list, a missing path, or an array of another shape or dtype.
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise UserError(f'images: an empty {type(images).__name__}; {EXPECTED}')
        found = []
        for index, item in enumerate(images):
            found.extend(_one(item, rgb, f'images[{index}]')[0])
        return found, False
    return _one(images, rgb, 'images')


def _one(item, rgb, key):
    """(list[Source], single) of one non-list input."""
    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        paths, base = list_images(path, key=key)
        return [Source(path=p) for p in paths], os.path.isfile(path) and base is None
    if isinstance(item, np.ndarray):
        return [Source(array=check_array(item, rgb, key))], True
    if isinstance(item, Image.Image):
        if item.mode != 'RGB':
            raise UserError(f'{key}: a PIL image of mode {item.mode}; expected mode RGB (image.convert("RGB"))')
        return [Source(array=check_array(np.asarray(item), True, key))], True
    raise UserError(f'{key}: a {type(item).__name__}; {EXPECTED}')


def check_array(array, rgb, key='images'):
    """``array`` as a contiguous BGR uint8 (H, W, 3) image.

    Raises:
        UserError: Another dtype (e.g. float images, which need converting to 0..255 uint8), a grey (H, W)
            or (H, W, 1) image, a 4-channel image, or an empty one.
    """
    if array.dtype != np.uint8:
        raise UserError(f'{key}: an array of dtype {array.dtype}; expected uint8 values 0..255 (e.g. '
                        '`(image * 255).round().astype(np.uint8)` for a float image in 0..1)')
    if array.ndim != 3 or array.shape[2] != 3 or 0 in array.shape:
        hint = {2: ' (grey: convert with cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))'}.get(array.ndim, '')
        if array.ndim == 3 and array.shape[2] == 4:
            hint = ' (with alpha: drop it with image[:, :, :3])'
        raise UserError(f'{key}: an array of shape {list(array.shape)}; expected (H, W, 3) colour{hint}')
    return np.ascontiguousarray(array[:, :, ::-1] if rgb else array)
