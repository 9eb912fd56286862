"""The result of :meth:`paddle_psp.api.Segmenter.predict` for one image."""
import dataclasses

import numpy as np

from paddle_psp.inference.predict import colourize, overlay


@dataclasses.dataclass(eq=False)
class Prediction:
    """One image's segmentation.

    Attributes:
        label_map (np.ndarray): int32 (H, W): the class id of each pixel, at the image's original size.
        scores (np.ndarray|None): float32 (classes, H, W): the averaged logits the class map is the argmax
            of (with ``legacy_tta``: averaged softmax probabilities); None unless asked for with
            ``predict(..., scores=True)``.
        path (str|None): The image file, or None for an array.
        image (np.ndarray): The image as BGR uint8 (H, W, 3) (what :meth:`overlay` blends).
        classes (list[str]): Class names, indexed by class id.
        palette (np.ndarray): uint8 (256, 3) RGB colour of each class id.
    """
    label_map: np.ndarray
    scores: np.ndarray
    path: str
    image: np.ndarray
    classes: list
    palette: np.ndarray

    def color_map(self):
        """The class map as a palette PIL image: pixel values are the class ids, shown in the class colours
        (``.save('x.png')`` writes what ``paddleseg predict`` writes to ``pseudo_color_prediction/``).

        Returns:
            PIL.Image.Image: Mode 'P'; ``.convert('RGB')`` gives the colours.
        """
        return colourize(self.label_map, self.palette)

    def overlay(self):
        """The image blended with the class colours, 0.6 image + 0.4 colour, as ``paddleseg predict``'s
        ``added_prediction/`` (BGR uint8 (H, W, 3), for ``cv2.imwrite``; ``[:, :, ::-1]`` for RGB)."""
        return overlay(self.image, self.label_map, self.palette)

    def class_fractions(self):
        """{class name: fraction of the pixels} of the classes present, largest first."""
        counts = np.bincount(self.label_map.reshape(-1), minlength=len(self.classes))
        order = np.argsort(-counts, kind='stable')
        return {self.classes[i]: counts[i] / self.label_map.size for i in order if counts[i]}
