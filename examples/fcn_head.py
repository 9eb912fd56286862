"""A third model, as a worked example: an FCN head (Long et al., CVPR 2015) on a dilated ResNet-vd.

The head builds only its own layers, a 3x3 conv-BN-ReLU on the last backbone stage, and says how they
decode the backbone features. The base classes (``paddle_psp/models/base.py``) own the rest: the head's
dropout and 1x1 classifier, the backbone, the bilinear upsampling of the logits to the input size and the
loading of ``pretrained`` weights. Importing this file registers ``ExampleFCN`` into PaddleSeg's MODELS,
so a config can name it (``examples/fcn_head.yml``). Run as a script it is ``paddleseg train`` with the
example registered::

    python examples/fcn_head.py --config examples/fcn_head.yml --save_dir output/fcn
"""
import sys

from paddleseg.cvlibs import manager

import paddle_psp_cli as cli
from paddle_psp.models.base import SegmentationHead, SegmentationModel
from paddle_psp.models.layers import ConvBN


class FCNHead(SegmentationHead):
    """3x3 conv-BN-ReLU on the last feature -> dropout -> 1x1 classifier."""

    def __init__(self, num_classes, in_channels, channels):
        super().__init__()
        self.conv_bn_relu = ConvBN(in_channels, channels, 3, bias=True)
        self.add_classifier(channels, num_classes)

    def decode(self, features):
        return self.conv_bn_relu(features[-1])


@manager.MODELS.add_component
class ExampleFCN(SegmentationModel):
    """FCN: a backbone and :class:`FCNHead`.

    Args:
        num_classes (int): Number of classes.
        backbone (paddle.nn.Layer): A backbone such as ZooResNet50_vd(output_stride=8).
        backbone_indices (tuple, optional): The stage the head reads. Default: (3,).
        channels (int, optional): Channels of the head's 3x3 conv. Default: 512.
        align_corners (bool, optional): ``align_corners`` of the final resize. Default: False.
        pretrained (str, optional): Weights of the whole model. Default: None.
    """

    def __init__(self, num_classes, backbone, backbone_indices=(3,), channels=512, align_corners=False,
                 pretrained=None):
        super().__init__(num_classes, backbone, backbone_indices, align_corners, pretrained)
        self.set_head(FCNHead(self.num_classes, self.in_channels()[-1], channels))


if __name__ == '__main__':
    sys.exit(cli.main(['train'] + sys.argv[1:]))
