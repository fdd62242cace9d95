"""ResNet18/34/50 adapted to 32x32 inputs (3x3 stride-1 stem, no max-pool), as in RepDistiller's
`resnetv2.py`. Parameter names are theirs: shortcuts are `shortcut`, the classifier `linear`.
"""
import torch.nn as nn
import torch.nn.functional as F

from ..common import ConvBNStemStages, StageChannels, init_fan_out
from . import resnet


class BasicBlock(resnet.BasicBlock):
    shortcut_name = "shortcut"


class Bottleneck(resnet.Residual):
    """1x1 reduce, 3x3 (strided), 1x1 expand (x4)."""

    expansion = 4
    shortcut_name = "shortcut"

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = resnet.conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self._add_shortcut(cin, planes, stride)

    def branch(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    @property
    def last_bn(self):
        return self.bn3


class ResNet(StageChannels, ConvBNStemStages, nn.Module):
    """feats: [stem, layer1..layer4] (post-ReLU); preact_feats: stem, then each stage's last block
    before its ReLU; pooled_feat: global average of layer4.

    get_stage_channels() gives the real channels of those five tensors; mdistiller returns the
    constant [256, 512, 1024, 2048] (right for ResNet50 without the stem, wrong for ResNet18/34)."""

    def __init__(self, block, num_blocks, num_classes=100):
        super().__init__()
        self.conv1 = resnet.conv3x3(3, 64)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        self.layer1, cin = resnet.make_stage(block, cin, 64, num_blocks[0], 1)
        self.layer2, cin = resnet.make_stage(block, cin, 128, num_blocks[1], 2)
        self.layer3, cin = resnet.make_stage(block, cin, 256, num_blocks[2], 2)
        self.layer4, cin = resnet.make_stage(block, cin, 512, num_blocks[3], 2)
        self.linear = nn.Linear(cin, num_classes)
        self.stage_channels = [64] + [w * block.expansion for w in (64, 128, 256, 512)]
        init_fan_out(self)

    def _stages(self):
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def get_bn_before_relu(self):
        return [stage[-1].last_bn for stage in self._stages()]


def ResNet18(num_classes=100):
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes)


def ResNet34(num_classes=100):
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes)


def ResNet50(num_classes=100):
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes)
