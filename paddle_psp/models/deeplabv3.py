"""DeepLabV3 (Chen et al., 2017): atrous spatial pyramid pooling with image-level features."""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddleseg.cvlibs import manager

from paddle_psp.models.base import SegmentationHead, SegmentationModel, check_positive_list
from paddle_psp.models.layers import ConvBN


class ASPP(nn.Layer):
    """Atrous spatial pyramid pooling: parallel atrous 3x3 convs (a 1x1 conv for rate 1) and image-level
    features (global average pool, 1x1 conv, upsampled back), concatenated and fused by a 1x1 conv."""

    def __init__(self, in_channels, out_channels, rates, image_pooling, align_corners):
        super().__init__()
        self.aspp_blocks = nn.LayerList([
            ConvBN(in_channels, out_channels, 1 if rate == 1 else 3, dilation=rate, bias=True) for rate in rates])
        self.global_avg_pool = nn.Sequential(
            nn.AdaptiveAvgPool2D(1), ConvBN(in_channels, out_channels, 1)) if image_pooling else None
        branches = len(rates) + (1 if image_pooling else 0)
        self.conv_bn_relu = ConvBN(out_channels * branches, out_channels, 1, bias=True)
        self.align_corners = align_corners

    def forward(self, x):
        outputs = [block(x) for block in self.aspp_blocks]
        if self.global_avg_pool is not None:
            outputs.append(F.interpolate(self.global_avg_pool(x), paddle.shape(x)[2:], mode='bilinear',
                                         align_corners=self.align_corners))
        return self.conv_bn_relu(paddle.concat(outputs, axis=1))


class DeepLabV3Head(SegmentationHead):
    """ASPP on the last feature -> dropout -> 1x1 classifier (no extra 3x3 conv, as PaddleSeg)."""

    def __init__(self, num_classes, in_channels, aspp_ratios, aspp_out_channels, image_pooling, align_corners):
        super().__init__()
        self.aspp = ASPP(in_channels, aspp_out_channels, aspp_ratios, image_pooling, align_corners)
        self.add_classifier(aspp_out_channels, num_classes, name='cls')

    def decode(self, features):
        return self.aspp(features[-1])


@manager.MODELS.add_component
class ZooDeepLabV3(SegmentationModel):
    """DeepLabV3 with PaddleSeg-compatible weights. Multi-grid is the backbone's ``multi_grid``.

    Args:
        num_classes (int): Number of classes.
        backbone (paddle.nn.Layer): A backbone such as ZooResNet50_vd(output_stride=8, multi_grid=[1, 2, 4]).
        backbone_indices (tuple, optional): The stage feeding ASPP. Default: (3,).
        aspp_ratios (tuple, optional): Atrous rates; rate 1 is a 1x1 conv. Default: (1, 12, 24, 36).
        aspp_out_channels (int, optional): Channels of each ASPP branch and of its output. Default: 256.
        image_pooling (bool, optional): Add the global-average-pooling branch. Default: True.
        align_corners (bool, optional): ``align_corners`` of every resize. Default: False.
        pretrained (str, optional): Weights of the whole model. Default: None.
    """

    def __init__(self, num_classes, backbone, backbone_indices=(3,), aspp_ratios=(1, 12, 24, 36),
                 aspp_out_channels=256, image_pooling=True, align_corners=False, pretrained=None):
        super().__init__(num_classes, backbone, backbone_indices, align_corners, pretrained)
        check_positive_list('aspp_ratios', aspp_ratios)
        self.set_head(DeepLabV3Head(self.num_classes, self.in_channels()[-1], list(aspp_ratios),
                                    aspp_out_channels, image_pooling, align_corners))
