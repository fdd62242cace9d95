"""CIFAR ResNets (He et al. 2016): resnet8/14/20/32/44/56/110 and the 4x wider resnet8x4/resnet32x4.

Three stages of 3x3 basic blocks on a 3x3 stem; depth = 6n + 2. Parameter names are
RepDistiller's/mdistiller's (conv1, bn1, layerK.i.{conv,bn}{1,2}, layerK.0.downsample, fc) so
their checkpoints (cifar_teachers.tar) load strictly.
"""
import torch.nn as nn
import torch.nn.functional as F

from ..common import StageChannels, init_fan_out, staged_forward


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def projection(cin, cout, stride):
    """1x1 conv + BN shortcut used when a block changes resolution or width."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class Residual(nn.Module):
    """A residual block: relu(branch(x) + shortcut(x)).

    `forward` returns `(output, output before the final ReLU)`; stages keep the last block's
    pre-activation for feature methods (OFD, ReviewKD). The projection shortcut is registered
    under `shortcut_name` because the two ResNet families in mdistiller name it differently.
    """

    expansion = 1
    shortcut_name = "downsample"

    def _add_shortcut(self, cin, planes, stride):
        cout = planes * self.expansion
        proj = projection(cin, cout, stride) if stride != 1 or cin != cout else None
        setattr(self, self.shortcut_name, proj)

    def branch(self, x):
        raise NotImplementedError

    def forward(self, x):
        proj = getattr(self, self.shortcut_name)
        preact = self.branch(x) + (x if proj is None else proj(x))
        return F.relu(preact), preact


class BasicBlock(Residual):
    """3x3 conv-BN-ReLU, 3x3 conv-BN."""

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self._add_shortcut(cin, planes, stride)

    def branch(self, x):
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    @property
    def last_bn(self):
        return self.bn2


def make_stage(block, cin, planes, num_blocks, stride):
    """`num_blocks` blocks; the first one changes stride/width. Returns (stage, out_channels)."""
    blocks = []
    for i in range(num_blocks):
        blocks.append(block(cin, planes, stride if i == 0 else 1))
        cin = planes * block.expansion
    return nn.Sequential(*blocks), cin


class ResNet(StageChannels, nn.Module):
    """feats: [stem, layer1, layer2, layer3] (post-ReLU); preact_feats: the stem, then each
    stage's last block before its ReLU; pooled_feat: global average of layer3 (B x widths[3])."""

    def __init__(self, depth, widths, num_classes=100):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = conv3x3(3, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        cin = widths[0]
        self.layer1, cin = make_stage(BasicBlock, cin, widths[1], n, 1)
        self.layer2, cin = make_stage(BasicBlock, cin, widths[2], n, 2)
        self.layer3, cin = make_stage(BasicBlock, cin, widths[3], n, 2)
        self.fc = nn.Linear(cin, num_classes)
        self.stage_channels = list(widths)
        init_fan_out(self)

    def _stem(self, x):
        return self.relu(self.bn1(self.conv1(x)))

    def forward(self, x):
        return staged_forward(x, self._stem, [self.layer1, self.layer2, self.layer3], self.fc)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, self.relu, self.layer1, self.layer2, self.layer3])

    def get_bn_before_relu(self):
        return [stage[-1].last_bn for stage in (self.layer1, self.layer2, self.layer3)]


_THIN = [16, 16, 32, 64]
_WIDE = [32, 64, 128, 256]  # the "x4" variants: 4x the channels of the thin ones in every stage, 2x at the stem


def resnet8(num_classes=100):
    return ResNet(8, _THIN, num_classes)


def resnet14(num_classes=100):
    return ResNet(14, _THIN, num_classes)


def resnet20(num_classes=100):
    return ResNet(20, _THIN, num_classes)


def resnet32(num_classes=100):
    return ResNet(32, _THIN, num_classes)


def resnet44(num_classes=100):
    return ResNet(44, _THIN, num_classes)


def resnet56(num_classes=100):
    return ResNet(56, _THIN, num_classes)


def resnet110(num_classes=100):
    return ResNet(110, _THIN, num_classes)


def resnet8x4(num_classes=100):
    return ResNet(8, _WIDE, num_classes)


def resnet32x4(num_classes=100):
    return ResNet(32, _WIDE, num_classes)
