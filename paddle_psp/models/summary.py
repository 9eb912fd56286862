"""``paddleseg models``: build the four zoo models, print parameter counts and one forward pass each."""
import time

import numpy as np
import paddle

from paddle_psp.models import ZooDeepLabV3, ZooPSPNet, ZooResNet50_vd, ZooResNet101_vd
from paddle_psp.weights.flags import models_parser

BACKBONES = {'ResNet50_OS8': ZooResNet50_vd, 'ResNet101_OS8': ZooResNet101_vd}


def build(model_name, backbone_name, num_classes):
    """One zoo model with the upstream config's arguments (random weights)."""
    backbone_class = BACKBONES[backbone_name]
    if model_name == 'PSPNet':
        return ZooPSPNet(num_classes, backbone_class(output_stride=8))
    return ZooDeepLabV3(num_classes, backbone_class(output_stride=8, multi_grid=[1, 2, 4]))


def count_parameters(model):
    """(trainable, total) parameter counts; BN running statistics are buffers and not counted."""
    params = model.parameters()
    trainable = sum(int(np.prod(p.shape)) for p in params if not p.stop_gradient)
    return trainable, sum(int(np.prod(p.shape)) for p in params)


def main(argv=None):
    args = models_parser().parse_args(argv)
    image = paddle.to_tensor(np.random.RandomState(0).rand(1, 3, args.input_size[1], args.input_size[0]),
                             dtype='float32')
    print(f'{"model":<10} {"backbone":<14} {"trainable params":>17} {"train outputs":<30} eval output  time')
    for model_name in ('PSPNet', 'DeepLabV3'):
        for backbone_name in BACKBONES:
            paddle.seed(0)
            model = build(model_name, backbone_name, args.num_classes)
            trainable, _ = count_parameters(model)
            model.train()
            train_shapes = [list(t.shape) for t in model(image)]
            model.eval()
            start = time.perf_counter()
            with paddle.no_grad():
                logits = model(image)[0]
            seconds = time.perf_counter() - start
            print(f'{model_name:<10} {backbone_name:<14} {trainable:>17,} {str(train_shapes):<30} '
                  f'{list(logits.shape)}  {seconds:.2f}s')
