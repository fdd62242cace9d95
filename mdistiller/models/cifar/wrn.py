"""Wide ResNets (Zagoruyko & Komodakis 2016): wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2.

Pre-activation blocks (BN-ReLU-conv, twice); depth = 6n + 4, widths 16k/32k/64k. Parameter
names are RepDistiller's (blockK.layer.i.{bn1,conv1,bn2,conv2,convShortcut}, final bn1, fc).
"""
import torch.nn as nn
import torch.nn.functional as F

from ..common import StageChannels, feature_dict, global_pool, init_fan_out
from .resnet import conv3x3


class PreActBlock(nn.Module):
    """Returns `(output, bn1(input))`: the block's first BN applied to its input is the
    pre-activation of the previous stage's output, which mdistiller reports as that stage's
    "preact" feature. Returning it here avoids a second BN call (mdistiller calls bn1 again after
    the forward, which in training mode updates its running statistics twice per step)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = conv3x3(cout, cout)
        # A projection is needed only when the width changes; it reads the *activated* input,
        # while the identity shortcut adds the raw input (as in the original WRN code).
        self.convShortcut = None if cin == cout else nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x):
        pre = self.bn1(x)
        act = F.relu(pre)
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        shortcut = x if self.convShortcut is None else self.convShortcut(act)
        return out + shortcut, pre


class WideStage(nn.Module):
    """`n` pre-activation blocks under `.layer` (RepDistiller's NetworkBlock). Returns the stage
    output and the first block's bn1(input)."""

    def __init__(self, n, cin, cout, stride):
        super().__init__()
        self.layer = nn.Sequential(*[PreActBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1)
                                     for i in range(n)])

    def forward(self, x):
        x, entry_preact = self.layer[0](x)
        for block in self.layer[1:]:
            x, _ = block(x)
        return x, entry_preact


class WideResNet(StageChannels, nn.Module):
    """feats: [stem conv, block1, block2, block3] as they leave each stage (pre-activation
    network, so no ReLU applied, as in mdistiller); preact_feats: [stem, then each stage output
    after the next BN (block2/block3 first bn1, final bn1)]; pooled_feat: global average of
    relu(bn1(block3))."""

    def __init__(self, depth, widen_factor, num_classes=100):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4 (16, 22, 28, 40, ...), got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = conv3x3(3, widths[0])
        self.block1 = WideStage(n, widths[0], widths[1], 1)
        self.block2 = WideStage(n, widths[1], widths[2], 2)
        self.block3 = WideStage(n, widths[2], widths[3], 2)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        self.stage_channels = widths
        init_fan_out(self, zero_linear_bias=True)

    def forward(self, x):
        f0 = self.conv1(x)
        f1, _ = self.block1(f0)
        f2, f1_pre = self.block2(f1)
        f3, f2_pre = self.block3(f2)
        f3_pre = self.bn1(f3)
        pooled = global_pool(F.relu(f3_pre))
        return self.fc(pooled), feature_dict([f0, f1, f2, f3], [f0, f1_pre, f2_pre, f3_pre], pooled)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.block1, self.block2, self.block3])

    def get_bn_before_relu(self):
        return [self.block2.layer[0].bn1, self.block3.layer[0].bn1, self.bn1]


def wrn_16_1(num_classes=100):
    return WideResNet(16, 1, num_classes)


def wrn_16_2(num_classes=100):
    return WideResNet(16, 2, num_classes)


def wrn_40_1(num_classes=100):
    return WideResNet(40, 1, num_classes)


def wrn_40_2(num_classes=100):
    return WideResNet(40, 2, num_classes)
