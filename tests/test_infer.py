"""Test-time augmentation and sliding-window inference against plain references written here.

The references loop over scales, flips and windows one image at a time with numpy and cv2.resize (an
independent bilinear implementation), so they share no code with paddle_psp.inference.tta.
"""
import cv2
import numpy as np
import paddle
import pytest

from paddle_psp.inference import tta
from paddle_psp.inference.tta import Augmentation, InferOptions
from paddle_psp.core.errors import UserError
from paddle_psp.inference.flags import add_tta_arguments
from tolerances import U_FLOAT32, assert_classes_differ_only_at_ties, resize_atol

NUM_CLASSES = 5


class ToyNet:
    """A numpy 'network': per-pixel linear map of the pixel and its right / lower neighbours, plus a term
    that depends on the column and row inside the input, so flips, scales and windows all change the result.
    Records the shape of every batch it sees."""

    def __init__(self, seed=0):
        rng = np.random.RandomState(seed)
        self.w_pixel, self.w_right, self.w_down = (rng.randn(NUM_CLASSES, 3) for _ in range(3))
        self.w_col, self.w_row = rng.randn(NUM_CLASSES), rng.randn(NUM_CLASSES)
        self.batches = []

    def __call__(self, batch):
        self.batches.append(batch.shape)
        right = np.concatenate([batch[..., 1:], batch[..., -1:]], axis=3)
        down = np.concatenate([batch[:, :, 1:], batch[:, :, -1:]], axis=2)
        logits = (np.einsum('kc,nchw->nkhw', self.w_pixel, batch)
                  + np.einsum('kc,nchw->nkhw', self.w_right, right)
                  + np.einsum('kc,nchw->nkhw', self.w_down, down))
        cols = np.linspace(-1, 1, batch.shape[3])[None, None, None, :]
        rows = np.linspace(-1, 1, batch.shape[2])[None, None, :, None]
        logits = logits + self.w_col[None, :, None, None] * cols + self.w_row[None, :, None, None] * rows
        return [paddle.to_tensor(logits.astype(np.float32))]  # like a PaddleSeg model: a list of Tensors

    def lipschitz(self):
        """How much a change of the input (largest absolute value) can change a logit: the largest row sum of
        the absolute weights on the input."""
        return float((np.abs(self.w_pixel) + np.abs(self.w_right) + np.abs(self.w_down)).sum(axis=1).max())

    def logit_bound(self, magnitude):
        """The largest absolute logit for inputs of at most ``magnitude`` (rows and columns lie in [-1, 1])."""
        return self.lipschitz() * magnitude + float((np.abs(self.w_col) + np.abs(self.w_row)).max())


def cv_resize(chw, height, width):
    """Reference bilinear resize of a (C, H, W) array with OpenCV."""
    hwc = cv2.resize(np.ascontiguousarray(chw.transpose(1, 2, 0)), (width, height),
                     interpolation=cv2.INTER_LINEAR)
    return hwc.reshape(height, width, -1).transpose(2, 0, 1)


def run_one(net, chw):
    """Reference: the net on a single (C, H, W) image."""
    return net(chw[np.newaxis].astype(np.float32))[0].numpy()[0]


def flip_chw(chw, horizontal, vertical):
    out = chw
    if horizontal:
        out = out[:, :, ::-1]
    if vertical:
        out = out[:, ::-1, :]
    return np.ascontiguousarray(out)


def softmax_chw(logits):
    e = np.exp(logits - logits.max(axis=0))
    return e / e.sum(axis=0)


def window_positions(length, window, stride):
    """Reference window starts: step by stride until a window reaches the end, pull the last one back."""
    starts, start = [], 0
    while True:
        end = min(start + window, length)
        starts.append(max(end - window, 0))
        if end >= length:
            return starts
        start += stride


def slide_reference(net, chw, crop, stride):
    height, width = chw.shape[1:]
    total, hits = 0, np.zeros((height, width))
    for top in window_positions(height, crop[1], stride[1]):
        for left in window_positions(width, crop[0], stride[0]):
            bottom, right = min(top + crop[1], height), min(left + crop[0], width)
            out = np.zeros((NUM_CLASSES, height, width))
            out[:, top:bottom, left:right] = run_one(net, chw[:, top:bottom, left:right])
            total = total + out
            hits[top:bottom, left:right] += 1
    return total / hits


def tta_reference(net, chw, scales, flips, legacy=False, window=None):
    """PaddleSeg TTA written as plain loops; legacy chains the rescaling and averages softmax."""
    height, width = chw.shape[1:]
    total, count, source = 0, 0, chw
    for scale in scales:
        scaled = cv_resize(source, int(height * scale + 0.5), int(width * scale + 0.5))
        if legacy:
            source = scaled
        for horizontal, vertical in flips:
            flipped = flip_chw(scaled, horizontal, vertical)
            logits = run_one(net, flipped) if window is None else slide_reference(net, flipped, *window)
            logits = cv_resize(flip_chw(logits, horizontal, vertical).astype(np.float32), height, width)
            total = total + (softmax_chw(logits) if legacy else logits)
            count += 1
    return total / count


def tta_atol(net, chw, scales, chained=False, windows=0):
    """How far paddle_psp's TTA may lie from :func:`tta_reference` (Paddle's bilinear resize against
    OpenCV's, float32 sums against float64 ones), derived (tests/tolerances.py, ``resize_atol``): the input's
    resize error passes through the net (times :meth:`ToyNet.lipschitz`), compounded once per scale when the
    rescaling is chained (legacy); the logits' resize back adds its own; averaging the augmentations (and
    ``windows`` sliding windows) adds a rounding of the logits per term."""
    length = int(max(chw.shape[1:]) * max(max(scales), 1.0)) + 1
    magnitude = float(np.abs(chw).max())
    logits = net.logit_bound(magnitude)
    steps = len(scales) if chained else 1
    count = len(scales) * 4 + windows
    return (net.lipschitz() * steps * resize_atol(length, magnitude) + resize_atol(length, logits)
            + count * U_FLOAT32 * logits)


def assert_same_tta(got, expected, atol):
    """Logits (or probabilities) within ``atol``, and classes that differ only where ``expected``'s top two are
    within twice that (tests/tolerances.py)."""
    np.testing.assert_allclose(got, expected, rtol=0, atol=atol)
    assert_classes_differ_only_at_ties(got.argmax(axis=0), expected, atol / float(np.abs(expected).max()), axis=0)


@pytest.fixture
def image():
    return np.random.RandomState(1).uniform(-1, 1, (3, 21, 34)).astype(np.float32)


ALL_FLIPS = [(False, False), (True, False), (False, True), (True, True)]


def test_flip_combinations_follow_paddleseg_order():
    assert tta.flip_combinations() == [(False, False)]
    assert tta.flip_combinations(True) == [(False, False), (True, False)]
    assert tta.flip_combinations(False, True) == [(False, False), (False, True)]
    assert tta.flip_combinations(True, True) == ALL_FLIPS


def test_plain_inference_is_the_forward_output(image):
    net = ToyNet()
    expected = run_one(net, image)
    np.testing.assert_allclose(tta.infer_logits(net, image), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(tta.infer_labels(net, image), expected.argmax(axis=0))


@pytest.mark.parametrize('legacy', [False, True])
def test_tta_matches_reference(image, legacy):
    net = ToyNet()
    scales = (0.75, 1.0, 1.3)
    options = InferOptions.create(aug=True, scales=scales, flip_horizontal=True, flip_vertical=True,
                                  legacy=legacy)
    got = tta.infer_logits(net, image, options=options)
    expected = tta_reference(net, image, scales, ALL_FLIPS, legacy=legacy)
    assert_same_tta(got, expected, tta_atol(net, image, scales, chained=legacy))


def test_legacy_and_current_tta_differ(image):
    net = ToyNet()
    current = tta_reference(net, image, (0.5, 1.0), ALL_FLIPS[:2])
    legacy = tta_reference(net, image, (0.5, 1.0), ALL_FLIPS[:2], legacy=True)
    got_current = tta.infer_logits(net, image, options=InferOptions.create(True, (0.5, 1.0), True))
    legacy_options = InferOptions.create(True, (0.5, 1.0), True, legacy=True)
    got_legacy = tta.infer_logits(net, image, options=legacy_options)
    assert_same_tta(got_current, current, tta_atol(net, image, (0.5, 1.0)))
    assert_same_tta(got_legacy, legacy, tta_atol(net, image, (0.5, 1.0), chained=True))
    assert np.abs(softmax_chw(current) - legacy).max() > 1e-2  # chained rescaling changes the result


def test_flips_of_one_scale_run_as_one_batch(image):
    net = ToyNet()
    options = InferOptions.create(aug=True, scales=(0.5, 1.0), flip_horizontal=True, flip_vertical=True)
    tta.infer_logits(net, image, options=options)
    assert net.batches == [(4, 3, 11, 17), (4, 3, 21, 34)]


def test_sliding_window_matches_reference(image):
    net = ToyNet()
    crop, stride = (16, 12), (10, 7)
    options = InferOptions.create(is_slide=True, crop_size=crop, stride=stride)
    got = tta.infer_logits(net, image, options=options)
    assert len(net.batches) == len(window_positions(21, 12, 7)) * len(window_positions(34, 16, 10)) == 9
    # no resize: only the float32 sum of the 9 windows' logits and its division differ from the reference
    np.testing.assert_allclose(got, slide_reference(net, image, crop, stride), rtol=0,
                               atol=(9 + 1) * U_FLOAT32 * net.logit_bound(float(np.abs(image).max())))
    whole = run_one(net, image)
    assert np.abs(got - whole).max() > 1e-2  # windows see other positions: the result must differ


def test_window_larger_than_image_runs_whole_image(image):
    net = ToyNet()
    got = tta.infer_logits(net, image, options=InferOptions.create(is_slide=True, crop_size=(64, 64),
                                                                     stride=(32, 32)))
    np.testing.assert_allclose(got, run_one(net, image), atol=1e-6)


def test_sliding_window_with_tta_matches_reference(image):
    net = ToyNet()
    crop, stride = (20, 14), (12, 9)
    options = InferOptions.create(True, (0.8, 1.2), True, False, True, crop, stride)
    got = tta.infer_logits(net, image, options=options)
    expected = tta_reference(net, image, (0.8, 1.2), ALL_FLIPS[:2], window=(crop, stride))
    assert_same_tta(got, expected, tta_atol(net, image, (0.8, 1.2), windows=9))


def test_padding_is_cropped_back(image):
    net = ToyNet()
    padded = np.zeros((3, 32, 40), np.float32)
    padded[:, :21, :34] = image
    trans_info = [('padding', (21, 34))]
    got = tta.infer_logits(net, padded, trans_info, InferOptions.create(True, (1.0, 0.6), True))
    expected = tta_reference(net, padded, (1.0, 0.6), ALL_FLIPS[:2])[:, :21, :34]
    assert got.shape == (NUM_CLASSES, 21, 34)
    assert_same_tta(got, expected, tta_atol(net, padded, (1.0, 0.6)))


def test_subsets_from_one_pass_match_separate_runs(image):
    net = ToyNet()
    subsets = {'ss': [Augmentation(1.0, False, False)],
               'flip': tta.augmentations((1.0,), flip_horizontal=True),
               'ms_flip': tta.augmentations((0.75, 1.0, 1.25), flip_horizontal=True)}
    got = tta.subset_logits(net, image, subsets)
    assert len(net.batches) == 3  # one batch per scale for all three subsets together
    separate = {'ss': InferOptions(), 'flip': InferOptions.create(True, 1.0, True),
                'ms_flip': InferOptions.create(True, (0.75, 1.0, 1.25), True)}
    for name, options in separate.items():   # the same resizes; the averages may sum in another order
        np.testing.assert_allclose(got[name], tta.infer_logits(ToyNet(), image, options=options), rtol=0,
                                   atol=6 * U_FLOAT32 * net.logit_bound(float(np.abs(image).max())))
    per_aug = dict(tta.iter_augmented_logits(ToyNet(), image, subsets['ms_flip']))
    assert set(per_aug) == set(subsets['ms_flip'])
    np.testing.assert_allclose(per_aug[Augmentation(1.0, True, False)],
                               cv_resize(flip_chw(run_one(ToyNet(), flip_chw(image, True, False)), True, False),
                                         21, 34), rtol=0, atol=tta_atol(net, image, (1.0,)))


def test_layer_forward_wraps_a_dygraph_layer(image):
    paddle.seed(3)
    layer = paddle.nn.Conv2D(3, NUM_CLASSES, 3, padding=1)
    layer.train()
    forward = tta.layer_forward(layer)
    assert not layer.training
    got = tta.infer_logits(forward, image, options=InferOptions.create(True, 1.0, True))
    weight, bias = layer.weight.numpy(), layer.bias.numpy()

    def conv(chw):  # reference 3x3 convolution with zero padding
        padded = np.pad(chw, ((0, 0), (1, 1), (1, 1)))
        out = np.zeros((NUM_CLASSES,) + chw.shape[1:])
        for dy in range(3):
            for dx in range(3):
                out += np.einsum('kc,chw->khw', weight[:, :, dy, dx],
                                 padded[:, dy:dy + chw.shape[1], dx:dx + chw.shape[2]])
        return out + bias[:, None, None]
    expected = (conv(image) + flip_chw(conv(flip_chw(image, True, False)), True, False)) / 2
    # a float32 sum of 27 products + bias against float64: at most 28 roundings of the sum of the terms' magnitudes
    terms = float(np.abs(weight).sum(axis=(1, 2, 3)).max() * np.abs(image).max() + np.abs(bias).max())
    np.testing.assert_allclose(got, expected, rtol=0, atol=(27 + 1 + 2) * U_FLOAT32 * terms)


@pytest.mark.parametrize('kwargs, key', [
    ({'aug': True, 'scales': (0.75, 0)}, 'scales'),
    ({'aug': True, 'scales': -1.0}, 'scales'),
    ({'aug': True, 'scales': ()}, 'scales'),
    ({'is_slide': True, 'crop_size': (64, 64), 'stride': (0, 32)}, 'stride'),
    ({'is_slide': True, 'crop_size': (64, 64), 'stride': (32, -4)}, 'stride'),
    ({'is_slide': True, 'crop_size': (64, 64), 'stride': (80, 32)}, 'stride'),
    ({'is_slide': True, 'crop_size': (0, 64), 'stride': (32, 32)}, 'crop_size'),
    ({'is_slide': True, 'crop_size': None, 'stride': (32, 32)}, 'is_slide'),
])
def test_bad_options_are_one_line_user_errors(kwargs, key):
    with pytest.raises(UserError) as err:
        InferOptions.create(**kwargs)
    assert str(err.value).startswith(key + ':') and '\n' not in str(err.value)


def test_forward_with_wrong_output_shape_is_reported(image):
    with pytest.raises(ValueError, match='forward returned logits of shape'):
        tta.infer_logits(lambda batch: batch[:, :, ::2], image)


def parse_flags(argv):
    import argparse
    parser = argparse.ArgumentParser()
    add_tta_arguments(parser, ('--aug_pred', '--aug_eval'))
    return parser.parse_args(argv)


def test_flags_override_the_configs_test_config():
    test_config = {'aug_eval': True, 'scales': [0.75, 1.0], 'flip_horizontal': True, 'is_slide': True,
                   'crop_size': [64, 32], 'stride': [32, 16]}
    assert tta.options_from_args(parse_flags([]), test_config) == InferOptions(
        (0.75, 1.0), True, False, (64, 32), (32, 16), False)
    options = tta.options_from_args(parse_flags(['--scales', '1.25', '--flip_vertical', '--legacy_tta',
                                                   '--stride', '16', '16']), test_config)
    assert options == InferOptions((1.25,), True, True, (64, 32), (16, 16), True)
    assert tta.options_from_args(parse_flags(['--scales', '2.0', '--flip_horizontal']), {}) == InferOptions()
    assert tta.options_from_args(parse_flags(['--aug_pred', '--scales', '2.0']), {}).scales == (2.0,)
    assert options.summary() == ('legacy TTA scales 1.25 flips h+v (4 augmentations), sliding window 64x32 '
                                 'stride 16x16')


@pytest.mark.parametrize('options, seen', [
    (InferOptions.create(), 1),
    (InferOptions.create(aug=True, scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75), flip_horizontal=True,
                         flip_vertical=True), 6),
    (InferOptions.create(True, (0.5, 0.8, 1.2), True, False, True, (20, 14), (12, 9)), 2),  # 0.8, 1.2: one window
    (InferOptions.create(is_slide=True, crop_size=(16, 12), stride=(10, 7)), 1)],
    ids=['single', 'six scales + flips', 'scales + windows', 'windows'])
def test_input_shapes_bounds_the_shapes_forward_sees(image, options, seen):
    """model_forward sizes oneDNN's shape cache from this bound: an undercount re-creates primitives per image."""
    net = ToyNet()
    tta.infer_logits(net, image, options=options)
    assert len(set(net.batches)) == seen <= options.input_shapes()
