"""Building blocks shared by the backbone and the heads."""
import paddle
import paddle.nn as nn


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
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, dilation=1, bias=False, relu=True,
                 avg_down=False):
        super().__init__()
        self.avg_down = nn.AvgPool2D(kernel_size=2, stride=2, ceil_mode=True) if avg_down else None
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                               padding=dilation * (kernel_size - 1) // 2, dilation=dilation,
                               bias_attr=None if bias else False)
        self._batch_norm = nn.BatchNorm2D(out_channels)
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
