"""MobileNetV1 (Howard et al. 2017) for ImageNet, as in mdistiller/MLKD/SLD (their ImageNet
"MobileNetV2" entry builds this network). Parameter names are theirs (model.{0..13}.{i}, fc).
"""
import torch.nn as nn
import torch.nn.functional as F

from ...errors import ConfigError
from ..common import StageChannels, feature_dict, global_pool


def conv_bn(cin, cout, stride):
    """Stem: 3x3 conv + BN (the ReLU is applied by the model, see MobileNetV1.forward)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))


def conv_dw(cin, cout, stride):
    """3x3 depthwise + BN + ReLU, then 1x1 pointwise + BN (final ReLU applied by the model).
    Indices 0, 1, 3, 4 hold the parameters, as in mdistiller where index 5 is the ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
    )


# (output channels, stride) of the 13 depthwise-separable blocks after the stem
LAYOUT = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1),
          (512, 1), (512, 1), (1024, 2), (1024, 1)]
FEATURE_BLOCKS = (3, 5, 11, 13)  # blocks whose outputs are the four features (56, 28, 14, 7 px at 224)


class MobileNetV1(StageChannels, nn.Module):
    """feats: relu of the outputs of blocks 3, 5, 11, 13; preact_feats: the same before the
    ReLU; pooled_feat: global average of the last (B x 1024). As in mdistiller there is no stem
    entry: its ImageNet ReviewKD/OFD settings (4 stages + pooled) depend on this layout."""

    def __init__(self, num_classes=1000, pretrained=False):
        super().__init__()
        if pretrained:
            raise ConfigError("no pretrained weights are published for ImageNet MobileNetV1; "
                              "set DISTILLER.TEACHER_WEIGHTS to a checkpoint or use a ResNet teacher")
        blocks, cin = [conv_bn(3, 32, 2)], 32
        for cout, stride in LAYOUT:
            blocks.append(conv_dw(cin, cout, stride))
            cin = cout
        self.model = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)
        self.stage_channels = [LAYOUT[i - 1][0] for i in FEATURE_BLOCKS]

    def forward(self, x):
        feats, preacts = [], []
        for i, block in enumerate(self.model):
            pre = block(x)
            x = F.relu(pre)
            if i in FEATURE_BLOCKS:
                feats.append(x)
                preacts.append(pre)
        pooled = global_pool(x)
        return self.fc(pooled), feature_dict(feats, preacts, pooled)

    def get_bn_before_relu(self):
        return [self.model[i][-1] for i in FEATURE_BLOCKS]
