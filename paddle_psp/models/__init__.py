"""PSPNet and DeepLabV3 on dilated ResNet-vd, and their loss; importing registers them into PaddleSeg's manager."""
from paddle_psp.models.resnet_vd import ResNetVd, ZooResNet50_vd, ZooResNet101_vd
from paddle_psp.models.pspnet import ZooPSPNet
from paddle_psp.models.deeplabv3 import ZooDeepLabV3
from paddle_psp.models.losses import ZooCrossEntropyLoss
from paddle_psp.weights.state_dict import load_weights

__all__ = ['ResNetVd', 'ZooResNet50_vd', 'ZooResNet101_vd', 'ZooPSPNet', 'ZooDeepLabV3', 'ZooCrossEntropyLoss',
           'load_weights']
