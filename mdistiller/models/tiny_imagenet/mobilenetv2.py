"""The MobileNetV2 mdistiller uses for Tiny-ImageNet (64x64, 200 classes): a different network
from the CIFAR "MobileNetV2" (full width, ReLU6, biased convs, 1x1 conv classifier).
Parameter names are mdistiller's (pre, stage1..stage7, conv1, conv2).
"""
import torch.nn as nn

from ..common import StageChannels, feature_dict, global_pool


class LinearBottleneck(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection (all with bias), identity shortcut
    when stride 1 and widths match."""

    def __init__(self, cin, cout, stride, expansion=6):
        super().__init__()
        hidden = cin * expansion
        self.residual = nn.Sequential(
            nn.Conv2d(cin, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden), nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, cout, 1), nn.BatchNorm2d(cout),
        )
        self.use_shortcut = stride == 1 and cin == cout

    def forward(self, x):
        out = self.residual(x)
        return out + x if self.use_shortcut else out


def make_stage(repeat, cin, cout, stride, expansion):
    blocks = [LinearBottleneck(cin, cout, stride, expansion)]
    blocks += [LinearBottleneck(cout, cout, 1, expansion) for _ in range(repeat - 1)]
    return nn.Sequential(*blocks)


class MobileNetV2(StageChannels, nn.Module):
    """feats: [stem, stage2, stage3, stage4, conv1 output]; the stages end in a linear projection,
    so preact_feats is the same list; pooled_feat: global average of conv1's output (B x 1280;
    mdistiller leaves it B x 1280 x 1 x 1).

    The stem is a 1x1 conv with padding 1, so a 64x64 input becomes 66x66 (mdistiller's layer,
    kept for checkpoint and logit compatibility)."""

    def __init__(self, num_classes=200):
        super().__init__()
        self.pre = nn.Sequential(nn.Conv2d(3, 32, 1, padding=1), nn.BatchNorm2d(32), nn.ReLU6(inplace=True))
        self.stage1 = LinearBottleneck(32, 16, 1, 1)
        self.stage2 = make_stage(2, 16, 24, 2, 6)
        self.stage3 = make_stage(3, 24, 32, 2, 6)
        self.stage4 = make_stage(4, 32, 64, 2, 6)
        self.stage5 = make_stage(3, 64, 96, 1, 6)
        self.stage6 = make_stage(3, 96, 160, 1, 6)
        self.stage7 = LinearBottleneck(160, 320, 1, 6)
        self.conv1 = nn.Sequential(nn.Conv2d(320, 1280, 1), nn.BatchNorm2d(1280), nn.ReLU6(inplace=True))
        self.conv2 = nn.Conv2d(1280, num_classes, 1)
        self.stage_channels = [32, 24, 32, 64, 1280]

    def forward(self, x):
        f0 = self.pre(x)
        f1 = self.stage2(self.stage1(f0))
        f2 = self.stage3(f1)
        f3 = self.stage4(f2)
        f4 = self.conv1(self.stage7(self.stage6(self.stage5(f3))))
        pooled = global_pool(f4)
        logits = self.conv2(pooled[:, :, None, None]).flatten(1)
        feats = [f0, f1, f2, f3, f4]
        return logits, feature_dict(feats, feats, pooled)


def mobilenetv2_tinyimagenet(num_classes=200):
    return MobileNetV2(num_classes=num_classes)
