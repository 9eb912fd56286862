"""Building blocks shared by the backbone and the heads."""
import paddle
import paddle.nn as nn

from paddle_psp.core.flags import DATA_FORMATS  # noqa: F401  (the layouts --data_format names; losses read it here)


class ConvBN(nn.Layer):
    """Conv2D -> BatchNorm -> optional ReLU, with an optional 2x2 avg-pool in front ("vd" shortcut).

    Sub-layer names (``_conv``, ``_batch_norm``) match PaddleSeg's so checkpoints load as they are.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Square kernel size (odd).
        stride (int, optional): Convolution stride. Default: 1.
        dilation (int, optional): Convolution dilation; padding keeps the spatial size. Default: 1.
        bias (bool, optional): Whether the convolution has a bias. Default: False.
        relu (bool, optional): Whether a ReLU follows the batch norm. Default: True.
        avg_down (bool, optional): Whether a 2x2/2 average pool (ceil mode) precedes the conv. Default: False.
        data_format (str, optional): 'NCHW' or 'NHWC' (the weights are the same). Default: 'NCHW'.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, dilation=1, bias=False, relu=True,
                 avg_down=False, data_format='NCHW'):
        super().__init__()
        self.avg_down = nn.AvgPool2D(kernel_size=2, stride=2, ceil_mode=True,
                                     data_format=data_format) if avg_down else None
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                               padding=dilation * (kernel_size - 1) // 2, dilation=dilation,
                               bias_attr=None if bias else False, data_format=data_format)
        self._batch_norm = nn.BatchNorm2D(out_channels, data_format=data_format)
        self.relu = nn.ReLU() if relu else None

    @property
    def conv(self):
        """The convolution (``paddle.nn.Conv2D``), for code that computes it another way."""
        return self._conv

    def forward(self, x):
        if self.avg_down is not None:
            x = self.avg_down(x)
        return self.normalize(self._conv(x))

    def normalize(self, y):
        """What follows the convolution: batch norm, then the optional ReLU, of a convolution output ``y``."""
        y = self._batch_norm(y)
        return self.relu(y) if self.relu is not None else y

    def fold_bias(self):
        """Move the convolution's bias into the batch norm's running mean, in place (exact in eval mode:
        ``BN(conv(x) + b)`` is ``BN'(conv(x))`` with running mean ``mean - b``). No-op without a bias."""
        if self._conv.bias is None:
            return
        with paddle.no_grad():
            self._batch_norm._mean.set_value(self._batch_norm._mean - self._conv.bias)
        self._conv.bias = None


def check_data_format(data_format):
    """A ValueError unless ``data_format`` is 'NCHW' or 'NHWC'."""
    if data_format not in DATA_FORMATS:
        raise ValueError(f'data_format: expected one of {list(DATA_FORMATS)}, got {data_format!r}')


def channel_axis(data_format):
    """The channel axis of a 4-D tensor in ``data_format``."""
    return 1 if data_format == 'NCHW' else 3


def spatial_size(x, data_format):
    """``[H, W]`` of a 4-D tensor in ``data_format`` (a tensor, so that it traces into exported models)."""
    return paddle.shape(x)[2:] if data_format == 'NCHW' else paddle.shape(x)[1:3]


class LayoutDropout(nn.Dropout):
    """``nn.Dropout`` whose random mask does not depend on the layout: with NHWC the mask is drawn in NCHW
    order, so a model trains the same in both layouts from the same seed.

    Args:
        p (float): Probability of zeroing an element.
        data_format (str, optional): 'NCHW' or 'NHWC'. Default: 'NCHW'.
    """

    def __init__(self, p, data_format='NCHW'):
        super().__init__(p)
        self.data_format = data_format

    def forward(self, x):
        if self.data_format == 'NCHW' or not self.training:
            return super().forward(x)
        return super().forward(x.transpose([0, 3, 1, 2])).transpose([0, 2, 3, 1])


class NCHWAdapter(nn.Layer):
    """An NHWC model behind an NCHW interface: images go in NCHW, every output comes back NCHW (for
    evaluation and inference code that works in NCHW). Holds no weights of its own.

    Args:
        model (paddle.nn.Layer): A model built with ``data_format='NHWC'``.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.training = model.training

    def forward(self, x):
        outputs = self.model(x.transpose([0, 2, 3, 1]))
        return [logit.transpose([0, 3, 1, 2]) for logit in outputs]
