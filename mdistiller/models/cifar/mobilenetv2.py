"""MobileNetV2 for CIFAR (Sandler et al. 2018), as RepDistiller's `mobile_half`: expansion 6,
width 0.5, stride-2 stem, registered as "MobileNetV2". Parameter names are theirs
(conv1.{0,1}, blocks.S.i.conv.{0..7}, conv2.{0,1}, classifier.0).
"""
import torch.nn as nn

from ..common import StageChannels, feature_dict, global_pool, init_fan_out


def conv_bn_relu(cin, cout, kernel_size, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, kernel_size // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class InvertedResidual(nn.Module):
    """1x1 expand, 3x3 depthwise (strided), 1x1 linear projection; identity shortcut when shapes
    allow. The expansion conv is kept even when the ratio is 1 (as in RepDistiller)."""

    def __init__(self, cin, cout, stride, expand_ratio):
        super().__init__()
        hidden = cin * expand_ratio
        self.use_res_connect = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x):
        out = self.conv(x)
        return x + out if self.use_res_connect else out


# (expansion, channels, blocks, first stride); expansion None = the model's T
SETTINGS = [(1, 16, 1, 1), (None, 24, 2, 1), (None, 32, 3, 2), (None, 64, 4, 2),
            (None, 96, 3, 1), (None, 160, 3, 2), (None, 320, 1, 1)]
FEATURE_AFTER = (1, 2, 4, 6)  # block groups whose outputs are feats[1:]


class MobileNetV2(StageChannels, nn.Module):
    """feats: [stem (post-ReLU), outputs of block groups 1, 2, 4, 6]; the groups end in a linear
    projection, so preact_feats is the same list (mdistiller gives no preact_feats here);
    pooled_feat: global average of conv2's output (B x 1280)."""

    def __init__(self, expansion=6, width_mult=0.5, num_classes=100):
        super().__init__()
        cin = int(32 * width_mult)
        self.conv1 = conv_bn_relu(3, cin, 3, stride=2)
        self.blocks = nn.ModuleList()
        for t, c, n, s in SETTINGS:
            cout = int(c * width_mult)
            group = []
            for i in range(n):
                group.append(InvertedResidual(cin, cout, s if i == 0 else 1, t or expansion))
                cin = cout
            self.blocks.append(nn.Sequential(*group))
        self.last_channel = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.conv2 = conv_bn_relu(cin, self.last_channel, 1)
        self.classifier = nn.Sequential(nn.Linear(self.last_channel, num_classes))
        self.stage_channels = [int(32 * width_mult)] + [int(SETTINGS[i][1] * width_mult) for i in FEATURE_AFTER]
        init_fan_out(self, linear_std=0.01)

    def forward(self, x):
        x = self.conv1(x)
        feats = [x]
        for i, group in enumerate(self.blocks):
            x = group(x)
            if i in FEATURE_AFTER:
                feats.append(x)
        pooled = global_pool(self.conv2(x))
        return self.classifier(pooled), feature_dict(feats, feats, pooled)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.blocks])

    def get_bn_before_relu(self):
        return [self.blocks[i][-1].conv[-1] for i in FEATURE_AFTER]


def mobile_half(num_classes=100):
    return MobileNetV2(expansion=6, width_mult=0.5, num_classes=num_classes)
