"""Inference for one image: test-time augmentation (scales, flips) and sliding-window inference.

Everything here works on a ``forward`` callable: ``forward(batch)`` takes an NCHW float32 numpy array
and returns the logits, NCHW at the batch's height and width, as a numpy array, a paddle Tensor, or a
list / tuple whose first element is one (a PaddleSeg model's output). :func:`layer_forward` turns a
dygraph ``paddle.nn.Layer`` into one; a Paddle Inference predictor can be wrapped the same way.

Test-time augmentation (PaddleSeg's current semantics, since PaddleSeg PR #2933): for each scale ``s``
the original (transformed) image is resized bilinearly to ``int(h*s+0.5) x int(w*s+0.5)``; for each flip
the logits are computed, flipped back and resized to the original size; the raw logits of all
augmentations are averaged, then arg-maxed. All flips of one scale go through ``forward`` as one batch.

Legacy semantics (``legacy=True``, PaddleSeg before that fix; they produced the ms+flip column of the
published tables): each scale resizes the previous scale's resized image (the target sizes still come
from the original, but resampling compounds), and softmax probabilities are averaged instead of logits.

To score several augmentation subsets from one set of forward passes (e.g. the single-scale, flip and
ms+flip columns of a benchmark table) use :func:`iter_augmented_logits` or :func:`subset_logits`.
"""
import collections
import dataclasses

import numpy as np
import paddle
import paddle.nn.functional as F

from paddle_psp.core.errors import UserError

Augmentation = collections.namedtuple('Augmentation', ['scale', 'flip_horizontal', 'flip_vertical'])
Augmentation.__doc__ = 'One test-time augmentation: a scale and whether the image is flipped each way.'


def flip_combinations(flip_horizontal=False, flip_vertical=False):
    """The (horizontal, vertical) flips to run, in PaddleSeg's order: none, h, v, both."""
    flips = [(False, False)]
    if flip_horizontal:
        flips.append((True, False))
    if flip_vertical:
        flips.append((False, True))
        if flip_horizontal:
            flips.append((True, True))
    return flips


def augmentations(scales=(1.0,), flip_horizontal=False, flip_vertical=False):
    """Every (scale, flip) pair, scales outermost: the augmentations PaddleSeg's flags select."""
    return [Augmentation(float(s), h, v) for s in check_scales(scales)
            for h, v in flip_combinations(flip_horizontal, flip_vertical)]


def check_scales(scales, key='scales'):
    """``scales`` (a number or a sequence) as a tuple of positive floats; a UserError otherwise."""
    values = [scales] if isinstance(scales, (int, float)) else list(scales or [])
    try:
        values = [float(s) for s in values]
    except (TypeError, ValueError):
        raise UserError(f'{key}: {scales!r} is not a list of numbers; expected numbers > 0 such as 0.75 1.0') \
            from None
    if not values or any(not s > 0 for s in values):
        raise UserError(f'{key}: {scales!r}; expected one or more numbers > 0, e.g. 0.75 1.0 1.25')
    return tuple(values)


def check_pair(values, key):
    """``values`` as a (width, height) tuple of positive ints; a UserError otherwise."""
    try:
        pair = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or min(pair) <= 0 or any(float(v) != int(v) for v in values):
        raise UserError(f'{key}: {values!r}; expected two integers > 0 (width height)')
    return pair


@dataclasses.dataclass(frozen=True)
class InferOptions:
    """How to infer one image.

    Attributes:
        scales (tuple[float]): Test-time scales.
        flip_horizontal (bool): Add horizontally flipped inputs.
        flip_vertical (bool): Add vertically flipped inputs (and, with ``flip_horizontal``, both).
        crop_size (tuple|None): Sliding-window size (width, height); None for whole-image inference.
        stride (tuple|None): Sliding-window stride (width, height).
        legacy (bool): Pre-PR-#2933 TTA: chained rescaling, averaged softmax probabilities.
    """
    scales: tuple = (1.0,)
    flip_horizontal: bool = False
    flip_vertical: bool = False
    crop_size: tuple = None
    stride: tuple = None
    legacy: bool = False

    @classmethod
    def create(cls, aug=False, scales=(1.0,), flip_horizontal=False, flip_vertical=False, is_slide=False,
               crop_size=None, stride=None, legacy=False):
        """Validated options from PaddleSeg's flags; scales and flips count only with ``aug``.

        Raises:
            UserError: A scale <= 0, or ``is_slide`` without a valid ``crop_size`` and ``stride``
                (positive, stride not larger than the window, which would leave pixels unpredicted).
        """
        scales = check_scales(scales)
        window = check_window(crop_size, stride) if is_slide else (None, None)
        if not aug:
            return cls(crop_size=window[0], stride=window[1])
        return cls(scales, bool(flip_horizontal), bool(flip_vertical), window[0], window[1], bool(legacy))

    def augmentations(self):
        """The augmentations these options run."""
        return augmentations(self.scales, self.flip_horizontal, self.flip_vertical)

    def input_shapes(self):
        """At most how many input shapes one image sends to ``forward``: one per scale (the flips of a scale
        run as one batch, and the sliding windows of a scale all have one size, edge windows being moved
        back inside the image; scales whose images exceed the window share it)."""
        return len(set(self.scales))

    def summary(self):
        """One line for logs, e.g. 'TTA scales 0.75,1 flips h (4 augmentations), sliding window ...'."""
        flips = [name for name, on in (('h', self.flip_horizontal), ('v', self.flip_vertical)) if on]
        augs = len(self.augmentations())
        text = 'single scale' if augs == 1 else (
            f'{"legacy " if self.legacy else ""}TTA scales {",".join(f"{s:g}" for s in self.scales)} '
            f'flips {"+".join(flips) or "none"} ({augs} augmentations)')
        if self.crop_size is not None:
            text += (f', sliding window {self.crop_size[0]}x{self.crop_size[1]} '
                     f'stride {self.stride[0]}x{self.stride[1]}')
        return text


def check_window(crop_size, stride):
    """Validated (crop_size, stride) of a sliding window, each (width, height)."""
    if crop_size is None or stride is None:
        raise UserError('is_slide: needs --crop_size W H and --stride W H; expected both, e.g. '
                        '--crop_size 1024 512 --stride 768 384')
    crop_size, stride = check_pair(crop_size, 'crop_size'), check_pair(stride, 'stride')
    if stride[0] > crop_size[0] or stride[1] > crop_size[1]:
        raise UserError(f'stride: {list(stride)} is larger than crop_size {list(crop_size)} and would leave '
                        'pixels unpredicted; expected stride <= crop_size')
    return crop_size, stride


def layer_forward(model):
    """A ``forward`` callable running the dygraph ``model`` in eval mode without gradients."""
    model.eval()

    def forward(batch):
        with paddle.no_grad():
            return model(paddle.to_tensor(batch))
    return forward


def logits_array(output):
    """The logits of a forward output (array, Tensor, or list / tuple of them) as a float32 numpy array."""
    if isinstance(output, (list, tuple)):
        output = output[0]
    if isinstance(output, paddle.Tensor):
        output = output.numpy()
    return np.asarray(output, np.float32)


def run_forward(forward, batch):
    """``forward(batch)`` as float32 logits, checked to be NCHW at the batch's size."""
    logits = logits_array(forward(np.ascontiguousarray(batch, np.float32)))
    if logits.ndim != 4 or logits.shape[0] != batch.shape[0] or logits.shape[2:] != batch.shape[2:]:
        raise ValueError(f'forward returned logits of shape {list(logits.shape)} for a batch of '
                         f'{list(batch.shape)}; expected (N, classes, H, W) at the input size')
    return logits


def sliding_window(forward, batch, crop_size, stride):
    """Logits of ``batch`` from windows of ``crop_size`` every ``stride`` (both (w, h)), overlaps averaged.

    Windows past the right / bottom edge are moved back inside the image; an image smaller than the
    window is run whole. Each window runs the whole batch through ``forward`` at once.
    """
    height, width = batch.shape[2:]
    rows = _window_starts(height, crop_size[1], stride[1])
    cols = _window_starts(width, crop_size[0], stride[0])
    total, count = None, np.zeros((height, width), np.float32)
    for top in rows:
        for left in cols:
            bottom, right = min(top + crop_size[1], height), min(left + crop_size[0], width)
            logits = run_forward(forward, batch[:, :, top:bottom, left:right])
            if total is None:
                total = np.zeros(batch.shape[:1] + logits.shape[1:2] + (height, width), np.float32)
            total[:, :, top:bottom, left:right] += logits
            count[top:bottom, left:right] += 1
    return total / count


def _window_starts(length, window, stride):
    """Start offsets of the windows along one axis, the last one clamped so it ends at the edge."""
    if length <= window:
        return [0]
    steps = -(-(length - window) // stride)  # ceil
    return [min(i * stride, length - window) for i in range(steps + 1)]


def resize(array, size):
    """Bilinear resize (align_corners False, as PaddleSeg) of an NCHW float32 array to ``size`` (h, w)."""
    if tuple(array.shape[2:]) == tuple(size):
        return array
    tensor = F.interpolate(paddle.to_tensor(np.ascontiguousarray(array)), list(size), mode='bilinear',
                           align_corners=False)
    return tensor.numpy()


def flip(array, flip_horizontal, flip_vertical):
    """``array`` (NCHW) flipped along width and / or height (a view)."""
    if flip_horizontal:
        array = array[:, :, :, ::-1]
    if flip_vertical:
        array = array[:, :, ::-1, :]
    return array


def restore(logits, trans_info):
    """Undo the shape changes recorded by PaddleSeg's transforms (``trans_info``), last first.

    ``('padding', (h, w))`` crops back to ``h x w``; ``('resize', (h, w))`` resizes bilinearly.
    """
    for item in reversed(list(trans_info or [])):
        mode = item[0][0] if isinstance(item[0], (list, tuple)) else item[0]
        height, width = (int(v) for v in np.asarray(item[1]).reshape(-1)[:2])
        if mode == 'padding':
            logits = logits[:, :, :height, :width]
        elif mode == 'resize':
            logits = resize(logits, (height, width))
        else:
            raise ValueError(f'trans_info: unknown transform {mode!r}; expected padding or resize')
    return logits


def softmax(logits):
    """Softmax over the class axis of NCHW logits (legacy TTA averages these)."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def iter_augmented_logits(forward, image, augs, trans_info=None, crop_size=None, stride=None, legacy=False):
    """Yield ``(Augmentation, logits)`` for each augmentation, from one forward pass per scale.

    Args:
        forward (callable): NCHW float32 numpy batch -> logits (see the module docstring).
        image (np.ndarray): The transformed image, CHW or 1CHW float32.
        augs (list[Augmentation]): What to run; augmentations of one scale run as one batch, scales in
            order of first appearance.
        trans_info (list, optional): PaddleSeg's record of the shape-changing transforms; the logits are
            mapped back to the original image size. Default: None.
        crop_size (tuple, optional): Sliding window (w, h); None runs the whole image. Default: None.
        stride (tuple, optional): Sliding-window stride (w, h). Default: None.
        legacy (bool, optional): Chain the rescaling and yield softmax probabilities. Default: False.

    Yields:
        tuple: ``(aug, array)``; array is float32 (classes, H, W) at the original image size: the
        augmentation's logits (legacy: probabilities), flipped back and resized.
    """
    image = np.asarray(image, np.float32)
    original = image if image.ndim == 4 else image[np.newaxis]
    size = original.shape[2:]
    by_scale = collections.OrderedDict()
    for aug in augs:
        by_scale.setdefault(float(aug.scale), []).append(aug)
    source = original
    for scale, group in by_scale.items():
        scaled = resize(source, (int(size[0] * scale + 0.5), int(size[1] * scale + 0.5)))
        source = scaled if legacy else original
        batch = np.concatenate([flip(scaled, a.flip_horizontal, a.flip_vertical) for a in group])
        if crop_size is None:
            logits = run_forward(forward, batch)
        else:
            logits = sliding_window(forward, batch, crop_size, stride)
        for i, aug in enumerate(group):
            one = resize(np.ascontiguousarray(flip(logits[i:i + 1], aug.flip_horizontal, aug.flip_vertical)),
                         size)
            if legacy:
                one = softmax(one)
            yield aug, restore(one, trans_info)[0]


def subset_logits(forward, image, subsets, trans_info=None, crop_size=None, stride=None, legacy=False):
    """The averaged logits of several augmentation subsets, running each augmentation once.

    Example: ``{'ss': [Augmentation(1.0, False, False)], 'flip': augmentations((1.0,), True),
    'ms_flip': augmentations((0.75, 1.0, 1.25), True)}`` runs three scales once and returns the three
    results a separate run per column would give (with ``legacy=True`` only subsets whose scales come
    first in the union's order match a separate run, since legacy rescaling chains through the scales).

    Args:
        subsets (dict): name -> list of Augmentation.
        Others: as :func:`iter_augmented_logits`.

    Returns:
        dict: name -> float32 (classes, H, W) mean over the subset's augmentations.
    """
    union = list(dict.fromkeys(aug for augs in subsets.values() for aug in augs))
    sums = {name: 0 for name in subsets}
    for aug, logits in iter_augmented_logits(forward, image, union, trans_info, crop_size, stride, legacy):
        for name, augs in subsets.items():
            if aug in augs:
                sums[name] = sums[name] + logits
    return {name: sums[name] / len(set(subsets[name])) for name in subsets}


def infer_logits(forward, image, trans_info=None, options=InferOptions()):
    """The averaged logits (legacy: probabilities) of one image under ``options``.

    Returns:
        np.ndarray: float32 (classes, H, W) at the original image size.
    """
    total = 0
    augs = options.augmentations()
    for _, logits in iter_augmented_logits(forward, image, augs, trans_info, options.crop_size, options.stride,
                                           options.legacy):
        total = total + logits
    return total / len(augs)


def infer_labels(forward, image, trans_info=None, options=InferOptions()):
    """The predicted class of each pixel (argmax of :func:`infer_logits`), int32 (H, W)."""
    return labels_of(infer_logits(forward, image, trans_info, options))


def labels_of(logits):
    """The class map (argmax over the class axis) of (classes, H, W) scores, int32 (H, W)."""
    return logits.argmax(axis=0).astype(np.int32)


def options_from_args(args, test_config=None):
    """Validated :class:`InferOptions` from the flags of :func:`paddle_psp.inference.flags.add_tta_arguments`
    over a config's ``test_config``.

    As in PaddleSeg, the config's ``test_config`` (aug_eval, scales, flip_horizontal, flip_vertical,
    is_slide, crop_size, stride) gives the defaults and each flag given on the command line wins.
    """
    settings = {'aug': False, 'scales': (1.0,), 'flip_horizontal': False, 'flip_vertical': False,
                'legacy': False, 'is_slide': False, 'crop_size': None, 'stride': None}
    config_keys = {'aug_eval': 'aug', 'legacy_tta': 'legacy'}
    for key, value in (test_config or {}).items():
        if config_keys.get(key, key) in settings:
            settings[config_keys.get(key, key)] = value
    flags = {'aug': args.aug, 'scales': args.scales, 'flip_horizontal': args.flip_horizontal,
             'flip_vertical': args.flip_vertical, 'legacy': args.legacy_tta, 'is_slide': args.is_slide,
             'crop_size': args.crop_size, 'stride': args.stride}
    settings.update({key: value for key, value in flags.items() if value is not None})
    return InferOptions.create(**settings)
