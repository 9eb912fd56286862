"""What PSPNet and DeepLabV3 share: backbone features in, logits at the input size out."""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddle_psp.weights.state_dict import load_weights


class SegmentationModel(nn.Layer):
    """Backbone -> ``self.head`` (built by the subclass) -> logits resized bilinearly to the input.

    The head receives the backbone features picked by ``backbone_indices`` and returns a list of logits:
    the main prediction first, then auxiliary ones (only while training).

    Args:
        num_classes (int): Number of classes (>= 1).
        backbone (paddle.nn.Layer): Returns a list of features and has ``feat_channels``.
        backbone_indices (list[int]): Which backbone features the head receives.
        align_corners (bool): ``align_corners`` of every bilinear resize.
        pretrained (str|None): Weights of the whole model (path, URL or zoo name).
    """

    def __init__(self, num_classes, backbone, backbone_indices, align_corners=False, pretrained=None):
        super().__init__()
        if int(num_classes) < 1:
            raise ValueError(f'num_classes: expected an integer >= 1, got {num_classes!r}')
        num_features = len(backbone.feat_channels)
        if not backbone_indices or any(i not in range(num_features) for i in backbone_indices):
            raise ValueError(f'backbone_indices: expected indices in [0, {num_features}), got {backbone_indices}')
        self.num_classes = int(num_classes)
        self.backbone = backbone
        self.backbone_indices = list(backbone_indices)
        self.align_corners = align_corners
        self.pretrained = pretrained

    def in_channels(self):
        """Channels of the features the head receives, in ``backbone_indices`` order."""
        return [self.backbone.feat_channels[i] for i in self.backbone_indices]

    def init_weights(self):
        """Load ``pretrained`` into the whole model, if given (call at the end of the subclass' __init__)."""
        if self.pretrained:
            load_weights(self, self.pretrained)

    def forward(self, x):
        features = self.backbone(x)
        logits = self.head([features[i] for i in self.backbone_indices])
        size = paddle.shape(x)[2:]
        return [F.interpolate(logit, size, mode='bilinear', align_corners=self.align_corners) for logit in logits]


def check_positive_list(name, values):
    """A ValueError unless ``values`` is a non-empty list of positive integers."""
    if not values or any(int(v) < 1 for v in values):
        raise ValueError(f'{name}: expected a non-empty list of positive integers, got {values!r}')
