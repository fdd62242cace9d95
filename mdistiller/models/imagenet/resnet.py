"""ImageNet ResNet18/34/50/101: torchvision's networks (same parameter names, so torchvision's
pretrained weights and mdistiller's ImageNet checkpoints both load) with the feature contract.

Pretrained weights come from torchvision's weights API: `weights="IMAGENET1K_V1"` (or a
`ResNetXX_Weights` member); `pretrained=True` (mdistiller's argument) means IMAGENET1K_V1, the
weights behind mdistiller's reported ImageNet teachers. Nothing is downloaded unless asked.
"""
import os

import torch
import torch.nn.functional as F
from torchvision import models as tvm

from ...errors import CheckpointError, ConfigError
from ..common import StageChannels, feature_dict, global_pool


def residual_preact(block, x):
    """A torchvision BasicBlock/Bottleneck's output before its final ReLU."""
    identity = x if block.downsample is None else block.downsample(x)
    out = block.relu(block.bn1(block.conv1(x)))
    if isinstance(block, tvm.resnet.Bottleneck):
        out = block.relu(block.bn2(block.conv2(out)))
        return block.bn3(block.conv3(out)) + identity
    return block.bn2(block.conv2(out)) + identity


def last_bn(block):
    return block.bn3 if isinstance(block, tvm.resnet.Bottleneck) else block.bn2


class ResNet(StageChannels, tvm.ResNet):
    """feats: relu of [stem (conv1+bn1, before max-pool), layer1..layer4]; preact_feats: the same
    before the ReLU; pooled_feat: global average of relu(layer4) (mdistiller's layout)."""

    def __init__(self, block, layers, num_classes=1000):
        super().__init__(block, layers, num_classes=num_classes)
        self.stage_channels = [64] + [w * block.expansion for w in (64, 128, 256, 512)]

    def _stages(self):
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, x):
        pre = self.bn1(self.conv1(x))
        x = F.relu(pre)
        feats, preacts = [x], [pre]
        x = self.maxpool(x)
        for stage in self._stages():
            pre = residual_preact(stage[-1], stage[:-1](x))
            x = F.relu(pre)
            feats.append(x)
            preacts.append(pre)
        pooled = global_pool(x)
        return self.fc(pooled), feature_dict(feats, preacts, pooled)

    def get_bn_before_relu(self):
        # mdistiller lists layer2..layer4 only (its ImageNet OFD aligns with the last three stages)
        return [last_bn(stage[-1]) for stage in self._stages()[1:]]


def load_torchvision_weights(model, weights_enum, weights, name, progress=True):
    """Load torchvision pretrained `weights` (a member or its name) into `model`."""
    try:
        weights = weights_enum.verify(weights)
    except (KeyError, TypeError):
        choices = ", ".join(w.name for w in weights_enum)
        raise ConfigError(f"unknown torchvision weights {weights!r} for {name}; choose one of {choices}") from None
    classes = len(weights.meta["categories"])
    if model.fc.out_features != classes:
        raise ConfigError(f"torchvision weights {weights.name} for {name} have {classes} classes, "
                          f"the model {model.fc.out_features}; build it with num_classes={classes}")
    try:
        state_dict = weights.get_state_dict(progress=progress, check_hash=True)
    except (OSError, RuntimeError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
        raise CheckpointError(f"could not get torchvision {weights.name} weights for {name} from {weights.url} "
                              f"({reason}); without network, place that file at {cached} or set "
                              "DISTILLER.TEACHER_WEIGHTS to a checkpoint") from None
    model.load_state_dict(state_dict)
    return model


def _build(name, block, layers, weights_enum, num_classes, weights, pretrained, progress):
    if pretrained and weights is None:
        weights = "IMAGENET1K_V1"
    model = ResNet(block, layers, num_classes=num_classes)
    if weights is not None:
        load_torchvision_weights(model, weights_enum, weights, name, progress)
    return model


def resnet18(num_classes=1000, weights=None, pretrained=False, progress=True):
    return _build("ResNet18", tvm.resnet.BasicBlock, [2, 2, 2, 2], tvm.ResNet18_Weights,
                  num_classes, weights, pretrained, progress)


def resnet34(num_classes=1000, weights=None, pretrained=False, progress=True):
    return _build("ResNet34", tvm.resnet.BasicBlock, [3, 4, 6, 3], tvm.ResNet34_Weights,
                  num_classes, weights, pretrained, progress)


def resnet50(num_classes=1000, weights=None, pretrained=False, progress=True):
    return _build("ResNet50", tvm.resnet.Bottleneck, [3, 4, 6, 3], tvm.ResNet50_Weights,
                  num_classes, weights, pretrained, progress)


def resnet101(num_classes=1000, weights=None, pretrained=False, progress=True):
    return _build("ResNet101", tvm.resnet.Bottleneck, [3, 4, 23, 3], tvm.ResNet101_Weights,
                  num_classes, weights, pretrained, progress)
