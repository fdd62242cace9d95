"""Tiny-ImageNet (64x64, 200 classes) architectures and mdistiller's `tiny_imagenet_model_dict`:
name -> (constructor(num_classes=...), default teacher checkpoint path or None).
ResNet18 and ShuffleV2 are the CIFAR networks (global pooling makes them work at 64x64).
"""
from ..cifar.resnetv2 import ResNet18
from ..cifar.shufflenetv2 import ShuffleV2
from .mobilenetv2 import mobilenetv2_tinyimagenet

TINY_IMAGENET_TEACHER_DIR = "download_ckpts/tiny_imagenet_teachers"

tiny_imagenet_model_dict = {
    "ResNet18": (ResNet18, f"{TINY_IMAGENET_TEACHER_DIR}/ResNet18_vanilla/ti_res18"),
    "MobileNetV2": (mobilenetv2_tinyimagenet, None),
    "ShuffleV2": (ShuffleV2, None),
}
