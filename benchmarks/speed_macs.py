"""Multiply-accumulates each path of ``benchmarks/speed.py`` executes, counted analytically.

Forward hooks on every Conv2D add ``out_elements * in_channels / groups * kh * kw``. The fusion conv of
paddle-psp's pyramid pooling with ``fusion='factored'`` runs as
:func:`paddle_psp.models.ops.factored_fusion_conv` (functional ops on slices of the conv's weight, no
Conv2D layer call), so it is counted from its shapes; with ``fusion='concat'`` the Conv2D hook counts it.
"""
import numpy as np
import paddle

from paddle_psp.inference.entry import inference_copy
from paddle_psp.models.pspnet import PyramidPooling
from speed_paths import build_model


def count_macs(name, size):
    """GMAC per image each path executes: PaddleSeg's eval forward (with PSPNet's auxiliary head), our
    model's, and the fast path's inference copy without the taps on zero padding (oneDNN skips them)."""
    shape = [1, 3, *size]
    theirs = build_model(name, paddleseg=True)
    theirs.eval()
    ours = build_model(name, paddleseg=False)
    ours.eval()
    return {'paddleseg': conv_macs(theirs, shape) / 1e9, 'model': conv_macs(ours, shape) / 1e9,
            'fast': conv_macs(inference_copy(ours), shape, skip_padding=True) / 1e9}


def conv_macs(model, shape, skip_padding=False):
    """Multiply-accumulates of every Conv2D in one forward of an input of ``shape`` (forward hooks), and of
    paddle-psp's factored pyramid pooling (its convolutions and interpolation products, counted from its
    shapes: it calls the functional ops on slices of its fusion conv's weight).

    With ``skip_padding`` the kernel taps that fall on the zero padding are not counted: oneDNN skips
    them, im2col + GEMM (Paddle's dygraph CPU convolution) multiplies them by zero. It matters for the
    ASPP convolutions with dilation 12-36 on a 64x64 feature map.
    """
    return sum(conv_macs_by_layer(model, shape, skip_padding).values())


def conv_macs_by_layer(model, shape, skip_padding=False):
    """:func:`conv_macs` per layer: ``{full sub-layer name: MACs}`` (a Conv2D's, or a factored pyramid
    pooling module's fusion conv under the module's name), in call order. Runs the model in its mode."""
    names = {id(layer): name for name, layer in model.named_sublayers()}
    counts = {}

    def add(layer, macs):
        name = names[id(layer)]
        counts[name] = counts.get(name, 0) + int(macs)

    def count(layer, inputs, output):
        kernel = layer.weight.shape  # out, in / groups, kh, kw
        if skip_padding:
            axes = zip(inputs[0].shape[2:], output.shape[2:], kernel[2:], layer._stride,
                       _pair(layer._padding), layer._dilation)
            taps = [_valid_taps(*axis) for axis in axes]
            add(layer, output.shape[0] * output.shape[1] * kernel[1] * taps[0] * taps[1])
        else:
            add(layer, int(np.prod(output.shape)) * kernel[1] * kernel[2] * kernel[3])

    def count_pyramid(layer, inputs, output):
        batch, channels, height, width = inputs[0].shape
        out, _, kernel, _ = layer.conv_bn_relu2.conv.weight.shape
        branch = layer.stages[0][1].conv.weight.shape[0]
        taps = kernel * kernel
        if skip_padding:
            taps = _valid_taps(height, height, kernel, 1, kernel // 2, 1) * \
                _valid_taps(width, width, kernel, 1, kernel // 2, 1) / (height * width)
        direct = batch * out * channels * height * width * taps
        at_pooled = sum(batch * size * size * branch * kernel * kernel * out for size in layer.bin_sizes)
        vertical = sum(batch * out * kernel * size * kernel * size * height for size in layer.bin_sizes)
        horizontal = batch * out * height * kernel * sum(layer.bin_sizes) * width
        add(layer, int(direct) + at_pooled + vertical + horizontal)

    hooks = [layer.register_forward_post_hook(count) for layer in model.sublayers()
             if isinstance(layer, paddle.nn.Conv2D)]
    hooks += [layer.register_forward_post_hook(count_pyramid) for layer in model.sublayers()
              if isinstance(layer, PyramidPooling) and layer.fusion == 'factored']
    with paddle.no_grad():
        model(paddle.zeros(shape, 'float32'))
    for hook in hooks:
        hook.remove()
    return counts


def _pair(padding):
    if isinstance(padding, int):
        return [padding, padding]
    if len(padding) == 2 and all(isinstance(p, int) for p in padding):
        return list(padding)
    raise ValueError(f'padding {padding!r}: only symmetric integer paddings are counted')


def _valid_taps(size, out_size, kernel, stride, padding, dilation):
    """Sum over output positions of the kernel taps that land inside the input (one axis)."""
    positions = np.arange(out_size)[:, None] * stride - padding + np.arange(kernel)[None, :] * dilation
    return int(((positions >= 0) & (positions < size)).sum())
