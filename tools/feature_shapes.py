"""Print the feature shapes of a (teacher, student) pair and which feature distillers fit it.

    python tools/feature_shapes.py resnet32x4 resnet8x4
    python tools/feature_shapes.py resnet32x4 ShuffleV1 --cfg configs/cifar100/reviewkd.yaml
    python tools/feature_shapes.py ResNet34 ResNet18 --dataset imagenet

Each method's verdict is "fits" or the one-line error that building it would raise, e.g. which
channels differ or which config key to change.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from mdistiller.distillers.shapes import main  # noqa: E402

if __name__ == "__main__":
    main()
