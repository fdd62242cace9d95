"""Per-image pipelines: a geometric step, the optional strong augmentation, then tensor + normalise.

A weak view is `geometric -> tensor`; a strong view draws its own geometric step (independent
crop/flip) and adds RandAugment + Cutout before the tensor. Datasets differ only in their
`ViewSpec` (geometric steps and normalisation); the views are built the same way for all.
"""
import random
from typing import Callable, NamedTuple, Tuple

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from .randaugment import RandAugment

CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TINY_IMAGENET_MEAN = (0.4802, 0.4481, 0.3975)
TINY_IMAGENET_STD = (0.2302, 0.2265, 0.2262)


def to_tensor(img, mean, std):
    """uint8 HWC array or RGB PIL image -> normalised float CHW tensor.

    Same arithmetic, in the same order, as torchvision's ToTensor + Normalize, so the result is
    bit-identical to mdistiller's transforms.
    """
    pixels = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True))
    x = pixels.permute(2, 0, 1).contiguous().float().div(255)
    mean = torch.as_tensor(mean, dtype=x.dtype).view(-1, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype).view(-1, 1, 1)
    return x.sub_(mean).div_(std)


class PadCropFlip:
    """RandomCrop(size, padding, zero fill) + RandomHorizontalFlip(0.5) on a uint8 HWC array.

    Equivalent in distribution to torchvision's pair (offsets uniform in 0..2*padding,
    flip with probability 1/2) but works on arrays and exposes its draws (`sample`).
    """

    def __init__(self, padding):
        self.padding = padding

    def sample(self, rng=random):
        """(top, left, flip) for one image."""
        span = 2 * self.padding
        return rng.randint(0, span), rng.randint(0, span), rng.random() < 0.5

    def apply(self, pixels, top, left, flip):
        h, w = pixels.shape[:2]
        p = self.padding
        padded = np.zeros((h + 2 * p, w + 2 * p) + pixels.shape[2:], dtype=pixels.dtype)
        padded[p:p + h, p:p + w] = pixels
        out = padded[top:top + h, left:left + w]
        return np.ascontiguousarray(out[:, ::-1] if flip else out)

    def __call__(self, pixels, rng=random):
        return self.apply(pixels, *self.sample(rng))

    def __repr__(self):
        return f"PadCropFlip(padding={self.padding})"


class View:
    """One view of an image: geometric step, optional RandAugment + Cutout, tensor."""

    def __init__(self, geometric, mean, std, strong=False):
        self.geometric = geometric
        self.mean, self.std = mean, std
        self.augment = RandAugment() if strong else None

    def __call__(self, img):
        img = self.geometric(img)
        if self.augment is not None:
            pil = img if isinstance(img, Image.Image) else Image.fromarray(img)
            img = self.augment(pil)
        return to_tensor(img, self.mean, self.std)

    def __repr__(self):
        return f"View({self.geometric!r}, augment={self.augment!r})"


def identity(img):
    return img


class ViewSpec(NamedTuple):
    """What a dataset contributes to its pipelines."""

    train_geometric: Callable[[], Callable]  # factory: a fresh random geometric step
    test_geometric: Callable  # deterministic (resize/crop or identity)
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]


def train_views(spec, views):
    """[weak] for one view, [weak, strong] for two; each draws its own geometric step."""
    weak = View(spec.train_geometric(), spec.mean, spec.std)
    if views == 1:
        return [weak]
    return [weak, View(spec.train_geometric(), spec.mean, spec.std, strong=True)]


def test_view(spec):
    return View(spec.test_geometric, spec.mean, spec.std)


# ---------------------------------------------------------------- per-dataset specs
def cifar_spec():
    """mdistiller's CIFAR-100: RandomCrop(32, padding=4) + flip on uint8 arrays."""
    return ViewSpec(lambda: PadCropFlip(4), identity, CIFAR100_MEAN, CIFAR100_STD)


def imagenet_spec(size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """mdistiller's ImageNet: RandomResizedCrop + flip / Resize(size * 8/7) + CenterCrop."""
    test = T.Compose([T.Resize(round(size * 256 / 224)), T.CenterCrop(size)])
    return ViewSpec(lambda: T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip()]), test, mean, std)


def tiny_imagenet_spec():
    """mdistiller's Tiny-ImageNet (64x64): RandomRotation(20) + flip, no crop."""
    return ViewSpec(lambda: T.Compose([T.RandomRotation(20), T.RandomHorizontalFlip()]), identity,
                    TINY_IMAGENET_MEAN, TINY_IMAGENET_STD)


def small_folder_spec(size):
    """Small images (<= 64 px): CIFAR-style pad-crop + flip after resizing to size x size."""
    resize = T.Resize((size, size))
    return ViewSpec(lambda: T.Compose([resize, T.RandomCrop(size, padding=size // 8), T.RandomHorizontalFlip()]),
                    resize, IMAGENET_MEAN, IMAGENET_STD)
