"""Dilated ResNet-vd backbone (He et al., "Bag of Tricks", 2019) with output stride 8, 16 or 32.

Layer names follow PaddleSeg's ``ResNet_vd`` so its ImageNet tarballs and trained checkpoints load:
a three-conv stem ``conv1_1..conv1_3``, then blocks ``bb_{stage}_{index}``.
"""
import paddle.nn as nn

from paddleseg.cvlibs import manager

from paddle_psp.models.layers import ConvBN
from paddle_psp.weights.state_dict import load_weights

STAGE_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
# Dilation of stages 3 and 4 (index 2, 3) for each output stride; earlier stages are never dilated.
STAGE_DILATIONS = {8: (1, 1, 2, 4), 16: (1, 1, 1, 2), 32: (1, 1, 1, 1)}
STAGE_WIDTHS = (64, 128, 256, 512)


class BasicBlock(nn.Layer):
    """Two 3x3 convs (ResNet18/34)."""
    expansion = 1

    def __init__(self, in_channels, width, stride, dilation, project, avg_down):
        super().__init__()
        self.conv0 = ConvBN(in_channels, width, 3, stride=stride, dilation=dilation)
        self.conv1 = ConvBN(width, width, 3, dilation=dilation, relu=False)
        self.short = _projection(in_channels, width, stride, project, avg_down)
        self.relu = nn.ReLU()

    def forward(self, x):
        shortcut = x if self.short is None else self.short(x)
        return self.relu(self.conv1(self.conv0(x)) + shortcut)


class Bottleneck(nn.Layer):
    """1x1 -> 3x3 (strided, dilated) -> 1x1 with 4x expansion (ResNet50 and deeper)."""
    expansion = 4

    def __init__(self, in_channels, width, stride, dilation, project, avg_down):
        super().__init__()
        self.conv0 = ConvBN(in_channels, width, 1)
        self.conv1 = ConvBN(width, width, 3, stride=stride, dilation=dilation)
        self.conv2 = ConvBN(width, width * 4, 1, relu=False)
        self.short = _projection(in_channels, width * 4, stride, project, avg_down)
        self.relu = nn.ReLU()

    def forward(self, x):
        shortcut = x if self.short is None else self.short(x)
        return self.relu(self.conv2(self.conv1(self.conv0(x))) + shortcut)


def _projection(in_channels, out_channels, stride, project, avg_down):
    """The shortcut: identity, or (first block of a stage) a 1x1 conv, with avg-pool in front when strided."""
    if not project:
        return None
    return ConvBN(in_channels, out_channels, 1, relu=False, avg_down=avg_down and stride == 2)


class ResNetVd(nn.Layer):
    """ResNet-vd returning the four stage outputs (strides 4, 8, 8|16, 8|16|32).

    Args:
        depth (int): 18, 34, 50, 101 or 152.
        output_stride (int, optional): 8, 16 or 32; later stages trade stride for dilation. Default: 8.
        multi_grid (tuple, optional): Dilation multipliers of the last stage's blocks (DeepLabV3 uses
            (1, 2, 4)); one per block of that stage. Default: None (all 1).
        in_channels (int, optional): Image channels. Default: 3.
        pretrained (str, optional): A local path, URL or zoo name of backbone weights. Default: None.
    """

    def __init__(self, depth, output_stride=8, multi_grid=None, in_channels=3, pretrained=None):
        super().__init__()
        _check_choice('depth', depth, STAGE_DEPTHS)
        _check_choice('output_stride', output_stride, STAGE_DILATIONS)
        depths = STAGE_DEPTHS[depth]
        multi_grid = [1] * depths[3] if multi_grid is None else list(multi_grid)
        if len(multi_grid) != depths[3] or any(int(g) < 1 for g in multi_grid):
            raise ValueError(f'multi_grid: expected {depths[3]} positive integers (one per block of the '
                             f'last stage), got {multi_grid}')
        block = Bottleneck if depth >= 50 else BasicBlock
        self.conv1_1 = ConvBN(in_channels, 32, 3, stride=2)
        self.conv1_2 = ConvBN(32, 32, 3)
        self.conv1_3 = ConvBN(32, 64, 3)
        self.pool2d_max = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        self.stages = []
        channels = 64
        for stage, (num_blocks, width) in enumerate(zip(depths, STAGE_WIDTHS)):
            dilation = STAGE_DILATIONS[output_stride][stage]
            stride = 2 if stage > 0 and dilation == 1 else 1
            blocks = []
            for index in range(num_blocks):
                grid = multi_grid[index] if stage == 3 else 1
                first = index == 0
                layer = block(channels, width, stride if first else 1, dilation * grid, project=first,
                              avg_down=stage > 0)
                blocks.append(self.add_sublayer(f'bb_{stage}_{index}', layer))
                channels = width * block.expansion
            self.stages.append(blocks)
        self.feat_channels = [w * block.expansion for w in STAGE_WIDTHS]
        if pretrained:
            load_weights(self, pretrained)

    def forward(self, x):
        x = self.pool2d_max(self.conv1_3(self.conv1_2(self.conv1_1(x))))
        features = []
        for blocks in self.stages:
            for layer in blocks:
                x = layer(x)
            features.append(x)
        return features


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f'{name}: expected one of {sorted(allowed)}, got {value!r}')


@manager.BACKBONES.add_component
def ZooResNet50_vd(**kwargs):
    """ResNet50-vd; keyword arguments as :class:`ResNetVd`."""
    return ResNetVd(50, **kwargs)


@manager.BACKBONES.add_component
def ZooResNet101_vd(**kwargs):
    """ResNet101-vd; keyword arguments as :class:`ResNetVd`."""
    return ResNetVd(101, **kwargs)
