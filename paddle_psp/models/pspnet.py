"""PSPNet (Zhao et al., CVPR 2017): pyramid pooling over the last backbone stage, plus an auxiliary head."""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddleseg.cvlibs import manager

from paddle_psp.models.base import SegmentationHead, SegmentationModel, check_positive_list
from paddle_psp.models.layers import ConvBN
from paddle_psp.models.ops import factored_fusion_conv

POOLING = {'avg': nn.AdaptiveAvgPool2D, 'max': nn.AdaptiveMaxPool2D}
FUSIONS = ('factored', 'concat')


class PyramidPooling(nn.Layer):
    """The pyramid pooling module (Fig. 3 of the paper): pool the feature map to each bin size, reduce its
    channels with a 1x1 conv, upsample it back, concat with the input, fuse with a 3x3 conv-BN-ReLU.

    The concat order is [input, bins in reverse ``bin_sizes`` order], as PaddleSeg's checkpoints expect.

    Args:
        in_channels (int): Channels of the input feature map.
        out_channels (int): Channels of the output.
        bin_sizes (list[int]): Output sizes of the pools.
        pooling (str): 'avg' or 'max'.
        dim_reduction (bool): Reduce each pooled map to ``in_channels // len(bin_sizes)`` channels.
        align_corners (bool): ``align_corners`` of the upsampling.
        fusion (str, optional): How the fusion conv is computed: 'concat' as drawn in the paper, or
            'factored' (the same function, parameters and gradients, without building the concat; see
            :func:`paddle_psp.models.ops.factored_fusion_conv`). Default: 'factored'.
    """

    def __init__(self, in_channels, out_channels, bin_sizes, pooling, dim_reduction, align_corners,
                 fusion='factored'):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f'fusion: expected one of {list(FUSIONS)}, got {fusion!r}')
        branch_channels = in_channels // len(bin_sizes) if dim_reduction else in_channels
        self.stages = nn.LayerList([
            nn.Sequential(POOLING[pooling](size), ConvBN(in_channels, branch_channels, 1, bias=True))
            for size in bin_sizes])
        self.conv_bn_relu2 = ConvBN(in_channels + branch_channels * len(bin_sizes), out_channels, 3, bias=True)
        self.bin_sizes = list(bin_sizes)
        self.align_corners = align_corners
        self.fusion = fusion

    def forward(self, x):
        pooled = [stage(x) for stage in reversed(self.stages)]  # pool, then 1x1 conv-BN-ReLU, per bin
        if self.fusion == 'concat':
            return self.concat_fusion(x, pooled)
        return self.factored_fusion(x, pooled)

    def concat_fusion(self, x, pooled):
        """The paper's form: upsample each pooled map to the input size, concat, 3x3 conv-BN-ReLU."""
        size = paddle.shape(x)[2:]
        upsampled = [F.interpolate(p, size, mode='bilinear', align_corners=self.align_corners) for p in pooled]
        return self.conv_bn_relu2(paddle.concat([x] + upsampled, axis=1))

    def factored_fusion(self, x, pooled):
        """The same as :meth:`concat_fusion`, without building the upsampled maps or the concat."""
        fusion = self.conv_bn_relu2
        fused = factored_fusion_conv(x, pooled, fusion.conv.weight, fusion.conv.bias, self.align_corners)
        return fusion.normalize(fused)

    def extra_repr(self):
        return f'bin_sizes={self.bin_sizes}, align_corners={self.align_corners}, fusion={self.fusion!r}'


class AuxiliaryHead(nn.Sequential):
    """3x3 conv-BN-ReLU -> dropout -> 1x1 classifier, on an intermediate backbone stage.

    Args:
        in_channels (int): Channels of the stage.
        num_classes (int): Number of classes.
        mid_channels (int, optional): Channels of the 3x3 conv. Default: None, ``in_channels // 4`` as
            PaddleSeg (256 on ResNet50/101's third stage).
    """

    def __init__(self, in_channels, num_classes, mid_channels=None):
        mid_channels = mid_channels or in_channels // 4
        super().__init__(('conv_bn_relu', ConvBN(in_channels, mid_channels, 3, bias=True)),
                         ('dropout', nn.Dropout(0.1)),
                         ('conv', nn.Conv2D(mid_channels, num_classes, 1)))


class PSPHead(SegmentationHead):
    """Pyramid pooling on the last feature -> dropout -> 1x1 classifier; while training, also the
    auxiliary classifier on the first feature."""

    def __init__(self, num_classes, in_channels, pp_out_channels, bin_sizes, pooling, dim_reduction,
                 aux_in_channels, align_corners, fusion='factored', aux_channels=None):
        super().__init__()
        self.psp_module = PyramidPooling(in_channels, pp_out_channels, bin_sizes, pooling, dim_reduction,
                                         align_corners, fusion)
        self.add_classifier(pp_out_channels, num_classes)
        self.auxlayer = AuxiliaryHead(aux_in_channels, num_classes, aux_channels) if aux_in_channels else None

    def decode(self, features):
        return self.psp_module(features[-1])

    def forward(self, features):
        logits = super().forward(features)
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
        aux_channels (int, optional): Channels of the auxiliary head's 3x3 conv. Default: None, a quarter
            of its input's as PaddleSeg (256 on ResNet50/101).
        fusion (str, optional): How the pyramid's fusion conv is computed: 'factored' (faster) or
            'concat' (as drawn in the paper); same function, parameters and gradients, see
            :class:`PyramidPooling`. Default: 'factored'.
    """

    def __init__(self, num_classes, backbone, backbone_indices=(2, 3), pp_out_channels=1024,
                 bin_sizes=(1, 2, 3, 6), pooling='avg', dim_reduction=True, enable_auxiliary_loss=True,
                 align_corners=False, pretrained=None, aux_channels=None, fusion='factored'):
        super().__init__(num_classes, backbone, backbone_indices, align_corners, pretrained)
        check_positive_list('bin_sizes', bin_sizes)
        if pooling not in POOLING:
            raise ValueError(f'pooling: expected one of {sorted(POOLING)}, got {pooling!r}')
        if len(self.backbone_indices) != 2:
            raise ValueError(f'backbone_indices: expected (auxiliary stage, pyramid stage), got {backbone_indices}')
        aux_in, psp_channels = self.in_channels()
        self.set_head(PSPHead(self.num_classes, psp_channels, pp_out_channels, list(bin_sizes), pooling,
                              dim_reduction, aux_in if enable_auxiliary_loss else 0, align_corners, fusion,
                              aux_channels))
