"""PSPNet (Zhao et al., CVPR 2017): pyramid pooling over the last backbone stage, plus an auxiliary head."""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddleseg.cvlibs import manager

from paddle_psp.models.base import SegmentationModel, check_positive_list
from paddle_psp.models.layers import ConvBN

POOLING = {'avg': nn.AdaptiveAvgPool2D, 'max': nn.AdaptiveMaxPool2D}


class PyramidPooling(nn.Layer):
    """Pool to each bin size, (reduce channels,) upsample, concat with the input, fuse with a 3x3 conv-BN-ReLU.

    The concat order is [input, largest bin, ..., smallest bin], as PaddleSeg's checkpoints expect. The
    fusion conv is computed without building that concat: convolution, bilinear upsampling and zero-padded
    shifts are linear, so ``conv(concat[x, up(p_1), ...])`` is ``conv_x(x) + sum_i up(conv_i(p_i))``, where
    ``conv_i`` (bin i's slice of the weight) runs at the pooled resolution as one 1x1 product per kernel
    tap and ``up`` upsamples and shifts each tap's result (two small products with interpolation
    matrices, :func:`tap_matrix`). Same function, same parameters; it skips the upsampled half of the
    model's largest convolution, about 30 % of PSPNet's MACs in the forward and the backward pass.
    """

    def __init__(self, in_channels, out_channels, bin_sizes, pooling, dim_reduction, align_corners):
        super().__init__()
        branch_channels = in_channels // len(bin_sizes) if dim_reduction else in_channels
        self.stages = nn.LayerList([
            nn.Sequential(POOLING[pooling](size), ConvBN(in_channels, branch_channels, 1, bias=True))
            for size in bin_sizes])
        self.conv_bn_relu2 = ConvBN(in_channels + branch_channels * len(bin_sizes), out_channels, 3, bias=True)
        self.in_channels = in_channels
        self.bin_sizes = list(bin_sizes)
        self.align_corners = align_corners

    def fusion_weights(self):
        """The fusion conv's weight as (its slice over the input, [bin i's slice as a 1x1 conv weight with
        output channels ordered (ky, kx, out channel)] in ``bin_sizes`` order)."""
        weight = self.conv_bn_relu2._conv.weight  # out, in + bins * branch, ky, kx
        out_channels, _, kernel, _ = weight.shape
        branch = self.stages[0][1]._conv.weight.shape[0]
        # One split, not slices: the gradient of a split is one concat, each slice's a weight-sized tensor.
        direct, *reversed_bins = paddle.split(weight, [self.in_channels] + [branch] * len(self.bin_sizes), axis=1)
        taps = [bin_weight.transpose([2, 3, 0, 1]).reshape([kernel * kernel * out_channels, branch, 1, 1])
                for bin_weight in reversed_bins[::-1]]  # the concat lists the bins in reverse order
        return direct, taps

    def forward(self, x):
        fusion = self.conv_bn_relu2
        direct_weight, tap_weights = self.fusion_weights()
        kernel = direct_weight.shape[-1]
        out_channels = direct_weight.shape[0]
        shape = paddle.shape(x)
        columns, row_matrices = [], []
        for stage, taps, size in zip(self.stages, tap_weights, self.bin_sizes):
            pooled = F.conv2d(stage(x), taps).reshape([-1, kernel, kernel, out_channels, size, size])
            pooled = pooled.transpose([0, 3, 2, 5, 1, 4]).reshape(
                [-1, out_channels, kernel * size, kernel * size])  # N, c, (kx, x), (ky, y)
            vertical = F.linear(pooled, tap_matrix(shape[2], size, kernel, self.align_corners, x.dtype))
            columns.append(vertical.transpose([0, 1, 3, 2]))  # N, c, H, (kx, x)
            row_matrices.append(tap_matrix(shape[3], size, kernel, self.align_corners, x.dtype))
        # The horizontal products of all bins and taps as one 2-D product (oneDNN runs the broadcast
        # 4-D x 2-D form ~50x slower).
        columns = paddle.concat(columns, axis=3)
        pyramid = F.linear(columns.reshape([-1, columns.shape[3]]), paddle.concat(row_matrices, axis=0))
        fused = F.conv2d(x, direct_weight, fusion._conv.bias, padding=kernel // 2)
        fused = fused + pyramid.reshape([shape[0], out_channels, shape[2], shape[3]])
        return F.relu(fusion._batch_norm(fused))


def tap_matrix(length, size, kernel, align_corners, dtype='float32'):
    """[kernel * size, length] matrix: row (tap d, pooled position j), column i holds the bilinear weight of
    position j at output position ``i + d - kernel // 2`` when upsampling ``size`` to ``length`` (zero
    outside the image: the conv's zero padding). Built by resizing an identity with Paddle's own resize."""
    identity = paddle.eye(size, dtype=dtype).reshape([1, size, size, 1])
    weights = F.interpolate(identity, size=[length, 1], mode='bilinear', align_corners=align_corners)
    weights = weights.reshape([size, -1])  # pooled position, output position
    half = kernel // 2
    zeros = paddle.zeros([size, half], dtype)
    padded = paddle.concat([zeros, weights, zeros], axis=1)
    return paddle.concat([padded[:, start:(start - 2 * half) or None] for start in range(kernel)], axis=0)


class AuxiliaryHead(nn.Sequential):
    """3x3 conv-BN-ReLU -> dropout -> 1x1 classifier, on an intermediate backbone stage."""

    def __init__(self, in_channels, mid_channels, num_classes):
        super().__init__(('conv_bn_relu', ConvBN(in_channels, mid_channels, 3, bias=True)),
                         ('dropout', nn.Dropout(0.1)),
                         ('conv', nn.Conv2D(mid_channels, num_classes, 1)))


class PSPHead(nn.Layer):
    """Pyramid pooling -> dropout -> 1x1 classifier; an auxiliary classifier while training."""

    def __init__(self, num_classes, in_channels, pp_out_channels, bin_sizes, pooling, dim_reduction,
                 aux_in_channels, align_corners):
        super().__init__()
        self.psp_module = PyramidPooling(in_channels, pp_out_channels, bin_sizes, pooling, dim_reduction,
                                         align_corners)
        self.dropout = nn.Dropout(0.1)
        self.conv = nn.Conv2D(pp_out_channels, num_classes, 1)
        self.auxlayer = AuxiliaryHead(aux_in_channels, 256, num_classes) if aux_in_channels else None

    def forward(self, features):
        logits = [self.conv(self.dropout(self.psp_module(features[-1])))]
        if self.auxlayer is not None and self.training:
            logits.append(self.auxlayer(features[0]))
        return logits


@manager.MODELS.add_component
class ZooPSPNet(SegmentationModel):
    """PSPNet with PaddleSeg-compatible weights.

    Args:
        num_classes (int): Number of classes.
        backbone (paddle.nn.Layer): A backbone such as ZooResNet50_vd(output_stride=8).
        backbone_indices (tuple, optional): (auxiliary stage, pyramid-pooling stage). Default: (2, 3).
        pp_out_channels (int, optional): Channels after the pyramid pooling module. Default: 1024.
        bin_sizes (tuple, optional): Output sizes of the pyramid's pools. Default: (1, 2, 3, 6).
        pooling (str, optional): 'avg' or 'max' pooling in the pyramid. Default: 'avg'.
        dim_reduction (bool, optional): 1x1 conv to in_channels / len(bin_sizes) after each pool. Default: True.
        enable_auxiliary_loss (bool, optional): Add the auxiliary classifier (its logits come second,
            while training only). Default: True.
        align_corners (bool, optional): ``align_corners`` of every resize. Default: False.
        pretrained (str, optional): Weights of the whole model. Default: None.
    """

    def __init__(self, num_classes, backbone, backbone_indices=(2, 3), pp_out_channels=1024,
                 bin_sizes=(1, 2, 3, 6), pooling='avg', dim_reduction=True, enable_auxiliary_loss=True,
                 align_corners=False, pretrained=None):
        super().__init__(num_classes, backbone, backbone_indices, align_corners, pretrained)
        check_positive_list('bin_sizes', bin_sizes)
        if pooling not in POOLING:
            raise ValueError(f'pooling: expected one of {sorted(POOLING)}, got {pooling!r}')
        if len(self.backbone_indices) != 2:
            raise ValueError(f'backbone_indices: expected (auxiliary stage, pyramid stage), got {backbone_indices}')
        aux_channels, psp_channels = self.in_channels()
        self.head = PSPHead(self.num_classes, psp_channels, pp_out_channels, list(bin_sizes), pooling,
                            dim_reduction, aux_channels if enable_auxiliary_loss else 0, align_corners)
        self.init_weights()
