"""Tolerances for comparisons whose two sides sum in different orders (another layout, kernel, thread count or
ISA), derived rather than fitted to one machine.

A float32 dot product of ``n`` terms computed in two different orders differs, with overwhelming probability,
by at most ``LAMBDA * sqrt(n) * u`` relative to the sum of the terms' magnitudes (Higham and Mary, "A new
approach to probabilistic rounding error analysis", SIAM J. Sci. Comput. 2019: the bound holds with
probability at least ``1 - 2 n exp(-LAMBDA**2 / 2)``; LAMBDA = 8 makes that failure probability below 1e-9 for
any n used here). A network's forward pass composes ``depth`` such reductions; batch normalisation rescales
every layer's output to unit scale and ReLU is 1-Lipschitz, so the relative errors of successive layers add
rather than multiply: the logits, and the loss computed from them, differ by at most
``depth * LAMBDA * sqrt(n_max) * u``, where ``n_max`` is the longest reduction (input channels x kernel area of
the widest convolution).

This covers quantities computed by the forward pass and one reduction after it (the loss, batch-norm
statistics, the classifier's gradient). It does not cover gradients deep in an untrained network: there,
batch normalisation over a few values (a pooled 1x1 branch normalised over a batch of 2 has an analytically
zero input gradient, so what flows back is rounding noise) amplifies a difference in the last bit into
several percent of its own size. Such quantities are compared exactly, with both sides on the same kernels
and thread count; or, in a small module whose every reduction is counted, relative to the scale of their whole
family (:func:`assert_same_family`), against which that noise is as small as the other gradients' error.
"""
import math

import numpy as np

U_FLOAT32 = 2.0 ** -24   # unit roundoff of float32
LAMBDA = 8.0


def dot_rtol(n):
    """Relative difference bound of one float32 reduction of ``n`` terms summed in two orders."""
    return LAMBDA * math.sqrt(n) * U_FLOAT32


def forward_rtol(depth, n_max):
    """Relative difference bound of a network's outputs: ``depth`` reductions of at most ``n_max`` terms."""
    return depth * dot_rtol(n_max)


# ResNet50-vd: 3 stem convolutions + 16 bottlenecks x 3 + the heads' convolutions (at most 3 deep); the widest
# reduction is a 3x3 convolution over 2048 channels (PSPNet's fusion at full width; the tiny test heads are
# narrower, so this bounds them too).
RESNET50_DEPTH = 3 + 16 * 3 + 3
RESNET50_N_MAX = 2048 * 3 * 3
RESNET50_FORWARD_RTOL = forward_rtol(RESNET50_DEPTH, RESNET50_N_MAX)   # about 3.5e-3
RESNET101_FORWARD_RTOL = forward_rtol(3 + 33 * 3 + 3, RESNET50_N_MAX)   # 33 bottlenecks: about 6.9e-3


def assert_same_forward(actual, expected, rtol=RESNET50_FORWARD_RTOL, axis=1):
    """Two computations of the same logits (another kernel, layout or thread count) agree to ``rtol`` of the
    logits' scale, and their classes differ only at near ties: pixels whose top two ``expected`` logits are
    closer than the two sides may differ (twice the bound), so no fraction of agreement is assumed.

    Args:
        actual, expected (np.ndarray): Logits, classes along ``axis``.
        rtol (float, optional): The relative bound (:func:`forward_rtol`). Default: ResNet50's.
        axis (int, optional): The class axis. Default: 1.
    """
    bound = rtol * float(abs(expected).max())
    assert actual.shape == expected.shape
    assert float(abs(actual - expected).max()) <= bound, (float(abs(actual - expected).max()), bound)
    assert_classes_differ_only_at_ties(actual.argmax(axis), expected, rtol, axis)


def near_tie_pixels(expected, rtol=RESNET50_FORWARD_RTOL, axis=1):
    """How many pixels of logits ``expected`` may change class in another computation of them: those whose top
    two logits are within twice the bound ``rtol * max|expected|`` (elsewhere the argmax cannot move)."""
    bound = rtol * float(abs(expected).max())
    ordered = np.sort(expected, axis=axis)
    return int((np.take(ordered, -1, axis=axis) - np.take(ordered, -2, axis=axis) <= 2 * bound).sum())


def assert_classes_differ_only_at_ties(labels, expected, rtol=RESNET50_FORWARD_RTOL, axis=1):
    """Class map ``labels`` (from another computation of ``expected``'s logits) differs from ``expected``'s
    argmax only where its top two logits are within twice the bound ``rtol * max|expected|``."""
    bound = rtol * float(abs(expected).max())
    ordered = np.sort(expected, axis=axis)
    gap = np.take(ordered, -1, axis=axis) - np.take(ordered, -2, axis=axis)
    differs = labels != expected.argmax(axis)
    assert labels.shape == differs.shape
    assert (gap[differs] <= 2 * bound).all(), (int(differs.sum()), float(gap[differs].max()), bound)


def resize_atol(length, magnitude):
    """Bound on the difference of two float32 bilinear resizes of the same image (two implementations, e.g.
    Paddle's and OpenCV's), with ``length`` the longest axis of the two images and ``magnitude`` the largest
    absolute value resized.

    Each implementation maps an output position to a source coordinate ``(i + 0.5) * ratio - 0.5`` of size at
    most ``length`` in float32, so its interpolation weight may be off by a few roundings of ``length``
    (taken as ``4 * length * u``); along one axis that moves the value by at most the weight error times the
    difference of two neighbours (``2 * magnitude``), and the two axes add; the four-term weighted sum adds a
    few more roundings of ``magnitude``.
    """
    weight_error = 4 * length * U_FLOAT32
    return 2 * (weight_error * 2 * magnitude) + 8 * U_FLOAT32 * magnitude


def assert_same_family(actual, expected, rtol):
    """Two computations of a family of tensors (a module's gradients: every parameter's and the input's) agree
    to ``rtol`` of the family's scale, the largest magnitude in ``expected``.

    Scaled by the family, not by each tensor: a gradient that is analytically zero (a convolution bias followed
    by a batch norm in training mode) holds only rounding noise of the others, and differs by all of its own
    size between two summation orders; relative to the family it is as small as theirs.

    Args:
        actual, expected (list[np.ndarray]): The tensors, in the same order.
        rtol (float): The relative bound (:func:`forward_rtol`, with the reductions of the backward pass).
    """
    assert len(actual) == len(expected)
    bound = rtol * max(float(abs(e).max()) for e in expected)
    for index, (got, want) in enumerate(zip(actual, expected)):
        assert got.shape == want.shape, (index, got.shape, want.shape)
        assert float(abs(got - want).max()) <= bound, (index, float(abs(got - want).max()), bound)
