"""Pieces every architecture in the zoo shares.

The feature contract: `forward(x)` returns `(logits, feats)` where
  feats["feats"]        stage outputs (first = stem output), as mdistiller defines them per model
  feats["preact_feats"] the same stages before their final activation (stem entry repeated)
  feats["pooled_feat"]  the B x D vector the classifier sees
Feature distillers (FitNet, AT, OFD, ReviewKD, CRD, ...) index these lists, so which tensor
goes where follows mdistiller model by model; each model's docstring says where it differs.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def feature_dict(feats, preact_feats, pooled_feat):
    return {"feats": list(feats), "preact_feats": list(preact_feats), "pooled_feat": pooled_feat}


def global_pool(x):
    """Global average pool to a B x C vector. mdistiller uses fixed windows (AvgPool2d(8) for
    32x32 ResNets, avg_pool2d(x, 4) for ShuffleNets, ...) which equal this at the resolution the
    model was designed for; the adaptive form also works at other resolutions."""
    return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def run_stage(stage, x):
    """Run a sequence of blocks that each return `(output, output_before_final_activation)`;
    return the last block's pair (the stage feature and its pre-activation)."""
    preact = None
    for block in stage:
        x, preact = block(x)
    return x, preact


def staged_forward(x, stem, stages, classifier, head=None):
    """stem -> stages -> [head] -> global pool -> classifier, collecting the feature contract.

    `stem(x)` returns the (activated) stem output, which is also its own pre-activation entry,
    as in mdistiller. `head` runs between the last stage and pooling (e.g. ShuffleNetV2's 1x1 conv).
    """
    x = stem(x)
    feats, preacts = [x], [x]
    for stage in stages:
        x, pre = run_stage(stage, x)
        feats.append(x)
        preacts.append(pre)
    if head is not None:
        x = head(x)
    pooled = global_pool(x)
    return classifier(pooled), feature_dict(feats, preacts, pooled)


def init_fan_out(model, linear_std=None, zero_linear_bias=False):
    """mdistiller's initialisation for its CIFAR models: He-normal (fan-out) convolutions with
    zero bias, BatchNorm scale 1 / shift 0; Linear layers optionally N(0, linear_std) and/or zero
    bias (VGG, MobileNetV2, WRN), otherwise PyTorch's default."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if linear_std is not None:
                nn.init.normal_(m.weight, 0.0, linear_std)
            if zero_linear_bias or linear_std is not None:
                nn.init.zeros_(m.bias)


def channel_shuffle(x, groups):
    """ShuffleNet's channel shuffle: interleave the channels of `groups` equal groups."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ConvBNStemStages:
    """Mixin for the CIFAR models built as a conv1 -> bn1 -> ReLU stem, the stages `_stages()`
    lists (blocks returning `(output, pre-activation)`), an optional `_head` before pooling and
    the classifier `linear`: their forward pass and mdistiller's `get_feat_modules` (stem conv
    and BN, then the stages). Holds no parameters, so state-dict keys stay the models' own."""

    _head = None  # models that transform the last stage before pooling define it as a method

    def _stem(self, x):
        return F.relu(self.bn1(self.conv1(x)))

    def forward(self, x):
        return staged_forward(x, self._stem, self._stages(), self.linear, head=self._head)

    def get_feat_modules(self):
        return nn.ModuleList([self.conv1, self.bn1, *self._stages()])


class StageChannels:
    """Mixin: `get_stage_channels()` lists the channel count of each `feats["feats"]` entry
    (mdistiller's helper, used by OFD and other feature methods to size connectors)."""

    stage_channels = ()

    def get_stage_channels(self):
        return list(self.stage_channels)
