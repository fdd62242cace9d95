"""ShuffleNetV1 (Zhang et al. 2018) for CIFAR, groups = 3, as RepDistiller's "ShuffleV1":
1x1 stem (no downsampling), three stages of 4/8/4 units with widths 240/480/960.
Parameter names are theirs (conv1, bn1, layerK.i.{conv,bn}{1,2,3}, linear).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common import ConvBNStemStages, StageChannels, channel_shuffle


class ShuffleUnit(nn.Module):
    """Grouped 1x1 -> shuffle -> 3x3 depthwise -> grouped 1x1. A strided unit concatenates an
    average-pooled copy of its input (so it outputs `cout + cin` channels), a unit at stride 1
    adds it. Returns `(output, output before the final ReLU)`."""

    def __init__(self, cin, cout, stride, groups):
        super().__init__()
        mid = cout // 4
        # The unit right after the 24-channel stem uses an ungrouped first 1x1 conv (too few
        # input channels to split), as in the paper and RepDistiller.
        self.first_groups = 1 if cin == 24 else groups
        self.stride = stride
        self.conv1 = nn.Conv2d(cin, mid, 1, groups=self.first_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = channel_shuffle(out, self.first_groups)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.stride == 2:
            preact = torch.cat([out, F.avg_pool2d(x, 3, stride=2, padding=1)], 1)
        else:
            preact = out + x
        return F.relu(preact), preact


class ShuffleNet(StageChannels, ConvBNStemStages, nn.Module):
    """feats: [stem, layer1, layer2, layer3] (post-ReLU); preact_feats: stem, then each stage's
    last unit before its ReLU; pooled_feat: global average of layer3 (B x 960)."""

    def __init__(self, widths=(240, 480, 960), num_blocks=(4, 8, 4), groups=3, num_classes=100):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        cin = 24
        for k, (width, n) in enumerate(zip(widths, num_blocks), start=1):
            units = []
            for i in range(n):
                # the strided first unit concatenates its `cin` input channels to reach `width`
                units.append(ShuffleUnit(cin, width - cin if i == 0 else width, 2 if i == 0 else 1, groups))
                cin = width
            setattr(self, f"layer{k}", nn.Sequential(*units))
        self.linear = nn.Linear(cin, num_classes)
        self.stage_channels = [24, *widths]

    def _stages(self):
        return [self.layer1, self.layer2, self.layer3]

    def get_bn_before_relu(self):
        # The stage output mixes a BN branch with a pooled shortcut: no single BN precedes it.
        raise NotImplementedError("ShuffleV1 has no BN directly before its stage ReLUs; OFD cannot use it as teacher")


def ShuffleV1(num_classes=100):
    return ShuffleNet(num_classes=num_classes)
