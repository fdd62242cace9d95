"""VGG with BatchNorm for 32x32 inputs: vgg8, vgg11, vgg13, vgg16, vgg19 (mdistiller's `vggN_bn`).

Five conv blocks separated by 2x2 max-pools, global average pool, one linear layer. Parameter
names are RepDistiller's: blockK.{i} (conv with bias, BN, ReLU, ...), classifier.
"""
import torch.nn as nn
import torch.nn.functional as F

from ..common import StageChannels, feature_dict, global_pool, init_fan_out

# Output widths of the convolutions in each of the five blocks.
CONFIGS = {
    "vgg8": [[64], [128], [256], [512], [512]],
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "vgg19": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}


def conv_block(cin, widths):
    """conv-BN-ReLU for each width, without the last ReLU so the block output is the
    pre-activation feature (the model applies the ReLU)."""
    layers = []
    for w in widths:
        layers += [nn.Conv2d(cin, w, kernel_size=3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        cin = w
    return nn.Sequential(*layers[:-1])


class VGG(StageChannels, nn.Module):
    """feats: relu of each block's output [block0..block4]; preact_feats: [relu(block0), then
    block1..block4 before their ReLU]; pooled_feat: global average of relu(block4).

    As in mdistiller, the pool between block3 and block4 runs only for 64x64 inputs: at 32x32
    block4 works on 4x4 maps (pooling there would leave 2x2)."""

    def __init__(self, config, num_classes=100):
        super().__init__()
        cin = 3
        for i, widths in enumerate(config):
            setattr(self, f"block{i}", conv_block(cin, widths))
            cin = widths[-1]
        for i in range(4):
            setattr(self, f"pool{i}", nn.MaxPool2d(kernel_size=2, stride=2))
        self.pool4 = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear(cin, num_classes)
        self.stage_channels = [widths[-1] for widths in config]
        init_fan_out(self, linear_std=0.01)

    def _blocks(self):
        return [self.block0, self.block1, self.block2, self.block3, self.block4]

    def forward(self, x):
        pool_before_last = x.shape[2] == 64
        x = F.relu(self.block0(x))
        feats, preacts = [x], [x]
        for i, block in enumerate(self._blocks()[1:], start=1):
            if i < 4 or pool_before_last:
                x = getattr(self, f"pool{i - 1}")(x)
            pre = block(x)
            x = F.relu(pre)
            feats.append(x)
            preacts.append(pre)
        pooled = global_pool(x)
        return self.classifier(pooled), feature_dict(feats, preacts, pooled)

    def get_feat_modules(self):
        modules = []
        for i, block in enumerate(self._blocks()):
            modules += [block, getattr(self, f"pool{i}")]
        return nn.ModuleList(modules)

    def get_bn_before_relu(self):
        return [block[-1] for block in self._blocks()[1:]]


def vgg8(num_classes=100):
    return VGG(CONFIGS["vgg8"], num_classes)


def vgg11(num_classes=100):
    return VGG(CONFIGS["vgg11"], num_classes)


def vgg13(num_classes=100):
    return VGG(CONFIGS["vgg13"], num_classes)


def vgg16(num_classes=100):
    return VGG(CONFIGS["vgg16"], num_classes)


def vgg19(num_classes=100):
    return VGG(CONFIGS["vgg19"], num_classes)
