"""What every model here shares: :class:`SegmentationModel` (backbone -> head -> logits at the input size)
and :class:`SegmentationHead` (a head's own layers -> dropout -> 1x1 classifier).

A new model is a head that builds only its own layers and says how they turn backbone features into one
feature map (``decode``), plus a registered model class that builds the head (see ``examples/fcn_head.py``).
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddle_psp.weights.state_dict import load_weights


class SegmentationModel(nn.Layer):
    """Backbone -> head -> logits resized bilinearly to the input.

    A subclass calls ``super().__init__``, then :meth:`set_head` with its head.

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

    def set_head(self, head):
        """Install ``head`` (features in ``backbone_indices`` order -> list of logits), then load ``pretrained``
        into the whole model, if given."""
        self.head = head
        if self.pretrained:
            load_weights(self, self.pretrained)

    def forward(self, x):
        features = self.backbone(x)
        logits = self.head([features[i] for i in self.backbone_indices])
        size = paddle.shape(x)[2:]
        return [F.interpolate(logit, size, mode='bilinear', align_corners=self.align_corners) for logit in logits]


class SegmentationHead(nn.Layer):
    """Base of the heads: the head's own layers (:meth:`decode`) -> dropout -> 1x1 classifier.

    A subclass calls ``super().__init__()``, builds its own layers, then :meth:`add_classifier` (last, so
    that state dict keys keep PaddleSeg's order), and implements :meth:`decode`. ``forward`` returns
    ``[logits]``; a head with auxiliary outputs appends them while training.
    """

    def add_classifier(self, channels, num_classes, dropout=0.1, name='conv'):
        """Add the dropout and the 1x1 classifier from ``channels`` features to ``num_classes`` logits.

        Args:
            channels (int): Channels of :meth:`decode`'s output.
            num_classes (int): Number of classes.
            dropout (float, optional): Dropout probability before the classifier. Default: 0.1.
            name (str, optional): The classifier's sub-layer name, its state dict key (PaddleSeg calls it
                ``conv`` in PSPNet and ``cls`` in DeepLabV3). Default: 'conv'.
        """
        self.dropout = nn.Dropout(dropout)
        self.classifier_name = name
        self.add_sublayer(name, nn.Conv2D(channels, num_classes, 1))

    def decode(self, features):
        """One feature map (N x channels x h x w) from the backbone features (``backbone_indices`` order)."""
        raise NotImplementedError

    def classify(self, feature):
        """Logits of a decoded feature map: dropout, then the 1x1 classifier."""
        return getattr(self, self.classifier_name)(self.dropout(feature))

    def forward(self, features):
        return [self.classify(self.decode(features))]


def check_positive_list(name, values):
    """A ValueError unless ``values`` is a non-empty list of positive integers."""
    if not values or any(int(v) < 1 for v in values):
        raise ValueError(f'{name}: expected a non-empty list of positive integers, got {values!r}')
