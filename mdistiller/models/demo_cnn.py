"""Small CNNs for the demo dataset (28x28 digits, see `mdistiller/data/demo.py`).

One family, `DemoCNN`, at three widths: a teacher big enough to be clearly better than the
students, and two students small enough that distillation visibly helps them within seconds of
CPU training. Layout: a 3x3 conv stem at 28x28, then three stages of (2x2 max-pool, 3x3
conv-BN-ReLU) at 14, 7 and 3 pixels, global average pool, one linear layer. The pools grow the
receptive field to the whole digit, which global pooling after plain stride-1 convs would not.

Follows the zoo's feature contract (`models/common.py`): feats = [stem, stage1..3] after ReLU,
preact_feats the same before ReLU (stem entry repeated), pooled_feat the B x C vector the classifier sees.
"""
import torch.nn as nn
import torch.nn.functional as F

from .common import StageChannels, feature_dict, global_pool, init_fan_out

# Widths of the stem and the three stages.
WIDTHS = {
    "demo_cnn_large": (32, 64, 128, 128),  # teacher, ~0.24M parameters
    "demo_cnn_small": (8, 16, 32, 32),  # ~15k parameters
    "demo_cnn_tiny": (4, 8, 16, 16),  # ~4k parameters: the demo's student
}


def conv_bn(cin, cout):
    """3x3 conv + BN (no ReLU: the model keeps the pre-activation for preact_feats)."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(cout))


class DemoCNN(StageChannels, nn.Module):
    def __init__(self, widths, num_classes=10, in_channels=3):
        super().__init__()
        self.stem = conv_bn(in_channels, widths[0])
        self.stages = nn.ModuleList(conv_bn(cin, cout) for cin, cout in zip(widths[:-1], widths[1:]))
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.classifier = nn.Linear(widths[-1], num_classes)
        self.stage_channels = list(widths)
        init_fan_out(self)

    def forward(self, x):
        pre = self.stem(x)
        x = F.relu(pre)
        feats, preacts = [x], [x]  # the zoo repeats the activated stem output (mdistiller's convention)
        for stage in self.stages:
            pre = stage(self.pool(x))
            x = F.relu(pre)
            feats.append(x)
            preacts.append(pre)
        pooled = global_pool(x)
        return self.classifier(pooled), feature_dict(feats, preacts, pooled)

    def get_feat_modules(self):
        return nn.ModuleList([self.stem, *self.stages])

    def get_bn_before_relu(self):
        return [stage[-1] for stage in self.stages]


def _constructor(name):
    def build(num_classes=10):
        return DemoCNN(WIDTHS[name], num_classes)
    build.__name__ = name
    return build


# Same shape as `cifar_model_dict`: name -> (constructor, teacher checkpoint). The demo trains
# its own teacher, so no checkpoint ships; configs point DISTILLER.TEACHER_WEIGHTS at it.
demo_model_dict = {name: (_constructor(name), None) for name in WIDTHS}
