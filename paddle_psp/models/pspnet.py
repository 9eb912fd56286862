"""PSPNet (Zhao et al., CVPR 2017): pyramid pooling over the last backbone stage, plus an auxiliary head."""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddleseg.cvlibs import manager

from paddle_psp.models.base import SegmentationModel, check_positive_list
from paddle_psp.models.layers import ConvBN

POOLING = {'avg': nn.AdaptiveAvgPool2D, 'max': nn.AdaptiveMaxPool2D}


class PyramidPooling(nn.Layer):
    """Pool to each bin size, (reduce channels,) upsample, concat with the input, fuse with a 3x3 conv.

    The concat order is [input, largest bin, ..., smallest bin], as PaddleSeg's checkpoints expect.
    """

    def __init__(self, in_channels, out_channels, bin_sizes, pooling, dim_reduction, align_corners):
        super().__init__()
        branch_channels = in_channels // len(bin_sizes) if dim_reduction else in_channels
        self.stages = nn.LayerList([
            nn.Sequential(POOLING[pooling](size), ConvBN(in_channels, branch_channels, 1, bias=True))
            for size in bin_sizes])
        self.conv_bn_relu2 = ConvBN(in_channels + branch_channels * len(bin_sizes), out_channels, 3, bias=True)
        self.align_corners = align_corners

    def forward(self, x):
        size = paddle.shape(x)[2:]
        pooled = [F.interpolate(stage(x), size, mode='bilinear', align_corners=self.align_corners)
                  for stage in self.stages]
        return self.conv_bn_relu2(paddle.concat([x] + pooled[::-1], axis=1))


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
