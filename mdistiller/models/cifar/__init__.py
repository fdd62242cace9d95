"""CIFAR-100 architectures and mdistiller's `cifar_model_dict`:
name -> (constructor(num_classes=...), default teacher checkpoint path or None).

Teacher paths are relative to the working directory, where mdistiller's `cifar_teachers.tar`
is extracted into `download_ckpts/` (mdistiller resolves them next to its source tree).
"""
from .mobilenetv2 import mobile_half
from .resnet import resnet8, resnet8x4, resnet14, resnet20, resnet32, resnet32x4, resnet44, resnet56, resnet110
from .resnetv2 import ResNet18, ResNet34, ResNet50
from .shufflenetv1 import ShuffleV1
from .shufflenetv2 import ShuffleV2
from .vgg import vgg8, vgg11, vgg13, vgg16, vgg19
from .wrn import wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2

CIFAR_TEACHER_DIR = "download_ckpts/cifar_teachers"


def cifar_teacher_path(name):
    return f"{CIFAR_TEACHER_DIR}/{name}_vanilla/ckpt_epoch_240.pth"


cifar_model_dict = {
    # teachers (mdistiller publishes their weights)
    "resnet56": (resnet56, cifar_teacher_path("resnet56")),
    "resnet110": (resnet110, cifar_teacher_path("resnet110")),
    "resnet32x4": (resnet32x4, cifar_teacher_path("resnet32x4")),
    "ResNet50": (ResNet50, cifar_teacher_path("ResNet50")),
    "wrn_40_2": (wrn_40_2, cifar_teacher_path("wrn_40_2")),
    "vgg13": (vgg13, cifar_teacher_path("vgg13")),
    # students
    "resnet8": (resnet8, None),
    "resnet14": (resnet14, None),
    "resnet20": (resnet20, None),
    "resnet32": (resnet32, None),
    "resnet44": (resnet44, None),
    "resnet8x4": (resnet8x4, None),
    "ResNet18": (ResNet18, None),
    "ResNet34": (ResNet34, None),
    "wrn_16_1": (wrn_16_1, None),
    "wrn_16_2": (wrn_16_2, None),
    "wrn_40_1": (wrn_40_1, None),
    "vgg8": (vgg8, None),
    "vgg11": (vgg11, None),
    "vgg16": (vgg16, None),
    "vgg19": (vgg19, None),
    "MobileNetV2": (mobile_half, None),
    "ShuffleV1": (ShuffleV1, None),
    "ShuffleV2": (ShuffleV2, None),
}
