"""ShuffleNetV2 1x (Ma et al. 2018) for CIFAR, as RepDistiller's "ShuffleV2": 1x1 stem (no
downsampling), stages of 3/7/3 units with widths 116/232/464, 1x1 conv to 1024.
Parameter names are theirs (conv1, bn1, layerK.0.{conv,bn}{1..5}, layerK.i.{conv,bn}{1,2,3},
conv2, bn2, linear).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common import ConvBNStemStages, StageChannels, channel_shuffle


def depthwise3x3(channels, stride):
    return nn.Conv2d(channels, channels, 3, stride=stride, padding=1, groups=channels, bias=False)


def conv1x1(cin, cout):
    return nn.Conv2d(cin, cout, 1, bias=False)


class BasicUnit(nn.Module):
    """Split channels in half; the second half goes through 1x1 -> 3x3 depthwise -> 1x1; concat;
    shuffle. Returns `(output, preact)` where preact is the unshuffled concat with the branch
    before its final ReLU (mdistiller's choice)."""

    def __init__(self, channels):
        super().__init__()
        half = channels // 2
        self.conv1 = conv1x1(half, half)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = depthwise3x3(half, 1)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = conv1x1(half, half)
        self.bn3 = nn.BatchNorm2d(half)

    def forward(self, x):
        keep, x = x.chunk(2, dim=1)
        out = F.relu(self.bn1(self.conv1(x)))
        branch = self.bn3(self.conv3(self.bn2(self.conv2(out))))
        out = torch.cat([keep, F.relu(branch)], 1)
        return channel_shuffle(out, 2), torch.cat([keep, branch], 1)


class DownUnit(nn.Module):
    """Two strided branches on the full input, each ending in 1x1-BN-ReLU with cout/2 channels;
    concat; shuffle. Returns `(output, preact)` like BasicUnit."""

    def __init__(self, cin, cout):
        super().__init__()
        mid = cout // 2
        # left: 3x3 depthwise (stride 2) -> 1x1
        self.conv1 = depthwise3x3(cin, 2)
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv2 = conv1x1(cin, mid)
        self.bn2 = nn.BatchNorm2d(mid)
        # right: 1x1 -> 3x3 depthwise (stride 2) -> 1x1
        self.conv3 = conv1x1(cin, mid)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = depthwise3x3(mid, 2)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = conv1x1(mid, mid)
        self.bn5 = nn.BatchNorm2d(mid)

    def forward(self, x):
        left = self.bn2(self.conv2(self.bn1(self.conv1(x))))
        right = F.relu(self.bn3(self.conv3(x)))
        right = self.bn5(self.conv5(self.bn4(self.conv4(right))))
        out = torch.cat([F.relu(left), F.relu(right)], 1)
        return channel_shuffle(out, 2), torch.cat([left, right], 1)


class ShuffleNetV2(StageChannels, ConvBNStemStages, nn.Module):
    """feats: [stem, layer1, layer2, layer3] (post-ReLU, shuffled); preact_feats: stem, then each
    stage's last unit's preact; pooled_feat: global average of relu(bn2(conv2(layer3))) (B x 1024)."""

    def __init__(self, widths=(116, 232, 464, 1024), num_blocks=(3, 7, 3), num_classes=100):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        cin = 24
        for k, (width, n) in enumerate(zip(widths[:3], num_blocks), start=1):
            stage = nn.Sequential(DownUnit(cin, width), *[BasicUnit(width) for _ in range(n)])
            setattr(self, f"layer{k}", stage)
            cin = width
        self.conv2 = conv1x1(cin, widths[3])
        self.bn2 = nn.BatchNorm2d(widths[3])
        self.linear = nn.Linear(widths[3], num_classes)
        self.stage_channels = [24, *widths[:3]]

    def _stages(self):
        return [self.layer1, self.layer2, self.layer3]

    def _head(self, x):
        return F.relu(self.bn2(self.conv2(x)))

    def get_bn_before_relu(self):
        # Stage outputs are shuffled concats that include un-normalised channels.
        raise NotImplementedError("ShuffleV2 has no BN directly before its stage ReLUs; OFD cannot use it as teacher")


def ShuffleV2(num_classes=100):
    return ShuffleNetV2(num_classes=num_classes)
