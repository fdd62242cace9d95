"""ImageNet architectures and mdistiller's `imagenet_model_dict`: name -> constructor
(`num_classes=1000`, `pretrained=False`, and for ResNets torchvision's `weights=None`)."""
from .mobilenetv1 import MobileNetV1
from .resnet import resnet18, resnet34, resnet50, resnet101

imagenet_model_dict = {
    "ResNet18": resnet18,
    "ResNet34": resnet34,
    "ResNet50": resnet50,
    "ResNet101": resnet101,
    "MobileNetV1": MobileNetV1,
    # Naming trap kept for config compatibility: the MLKD and SLD repositories register the
    # MobileNetV1 network under "MobileNetV2", and their ImageNet "R50 -> MobileNetV2" results
    # were trained with it. Their configs must build the network they trained.
    "MobileNetV2": MobileNetV1,
}
