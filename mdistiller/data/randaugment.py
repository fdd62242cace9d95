"""The strong view's RandAugment + Cutout, as the MLKD/SLD authors apply it (FixMatch style).

Per image: 2 ops drawn *with replacement* from the 14 in `OPS`, each with a magnitude drawn
uniformly in its range (RandAugment's "m" argument is unused), then always Cutout. This PIL
path is the reference; the on-device fast path imports `OPS` and the Cutout constants from
here so both sample from one table.

Randomness comes from an `rng` with the `random.Random` interface, by default the global
`random` module: DataLoader workers reseed it per worker (see loaders.py), whereas a
`Random` instance stored in the transform would be copied into every worker unchanged.
"""
import math
import random

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

OPS_PER_IMAGE = 2
# (name, low, high): magnitude ~ U[low, high). Ops without a magnitude still draw one in [0, 1)
# (unused), as the official code does.
OPS = [
    ("AutoContrast", 0.0, 1.0),
    ("Brightness", 0.05, 0.95),
    ("Color", 0.05, 0.95),
    ("Contrast", 0.05, 0.95),
    ("Equalize", 0.0, 1.0),
    ("Identity", 0.0, 1.0),
    ("Posterize", 4.0, 8.0),  # bits kept = int(v)
    ("Rotate", -30.0, 30.0),  # degrees, counter-clockwise
    ("Sharpness", 0.05, 0.95),
    ("ShearX", -0.3, 0.3),
    ("ShearY", -0.3, 0.3),
    ("Solarize", 0.0, 256.0),  # pixels >= v are inverted
    ("TranslateX", -0.3, 0.3),  # fraction of the width
    ("TranslateY", -0.3, 0.3),  # fraction of the height
]
CUTOUT_MAX = 0.5  # Cutout side = v * width with v ~ U[0, CUTOUT_MAX)
CUTOUT_FILL = (125, 123, 114)  # RGB of the cut square

_AFFINE = Image.Transform.AFFINE


def _affine(img, coeffs):
    # PIL's defaults are what the official ops rely on: nearest neighbour, black outside.
    return img.transform(img.size, _AFFINE, coeffs)


def _auto_contrast(img, v):
    return ImageOps.autocontrast(img)


def _brightness(img, v):
    return ImageEnhance.Brightness(img).enhance(v)


def _color(img, v):
    return ImageEnhance.Color(img).enhance(v)


def _contrast(img, v):
    return ImageEnhance.Contrast(img).enhance(v)


def _equalize(img, v):
    return ImageOps.equalize(img)


def _identity(img, v):
    return img


def _posterize(img, v):
    return ImageOps.posterize(img, max(1, int(v)))


def _rotate(img, v):
    return img.rotate(v)  # nearest, black corners, same size


def _sharpness(img, v):
    return ImageEnhance.Sharpness(img).enhance(v)


def _shear_x(img, v):
    return _affine(img, (1, v, 0, 0, 1, 0))


def _shear_y(img, v):
    return _affine(img, (1, 0, 0, v, 1, 0))


def _solarize(img, v):
    return ImageOps.solarize(img, v)


def _translate_x(img, v):
    return _affine(img, (1, 0, v * img.size[0], 0, 1, 0))


def _translate_y(img, v):
    return _affine(img, (1, 0, 0, 0, 1, v * img.size[1]))


_FUNCTIONS = {
    "AutoContrast": _auto_contrast,
    "Brightness": _brightness,
    "Color": _color,
    "Contrast": _contrast,
    "Equalize": _equalize,
    "Identity": _identity,
    "Posterize": _posterize,
    "Rotate": _rotate,
    "Sharpness": _sharpness,
    "ShearX": _shear_x,
    "ShearY": _shear_y,
    "Solarize": _solarize,
    "TranslateX": _translate_x,
    "TranslateY": _translate_y,
}
assert [name for name, _, _ in OPS] == list(_FUNCTIONS)


def apply_op(img, name, v):
    """Apply op `name` with magnitude `v` to an RGB PIL image."""
    return _FUNCTIONS[name](img, v)


def sample_ops(rng=random):
    """`OPS_PER_IMAGE` (name, magnitude) pairs: ops with replacement, magnitudes uniform."""
    return [(name, low + (high - low) * rng.random()) for name, low, high in rng.choices(OPS, k=OPS_PER_IMAGE)]


def sample_cutout(width, height, rng=random):
    """(v, cx, cy): side fraction v ~ U[0, CUTOUT_MAX) and the square's centre.

    The official code draws the centre with `np.random.uniform(w)`, i.e. low=w, high=1, which
    gives values in (1, w] rather than [0, w): we keep that (faithful) distribution.
    """
    v = rng.random() * CUTOUT_MAX
    cx = width + (1 - width) * rng.random()
    cy = height + (1 - height) * rng.random()
    return v, cx, cy


def cutout_box(v, cx, cy, width, height):
    """Pixel bounds (x0, y0, x1, y1), end-exclusive, of the Cutout square, or None for v <= 0.

    Official arithmetic: side s = v * width; x0 = int(max(0, cx - s/2)); the rectangle is drawn
    by PIL from x0 to min(width, x0 + s) *inclusive*, i.e. pixel columns x0 .. floor(x0 + s)
    clipped to the image: a square of floor(s) + 1 pixels unless clipped (same for rows).
    """
    if v <= 0:
        return None
    side = v * width
    x0 = int(max(0.0, cx - side / 2.0))
    y0 = int(max(0.0, cy - side / 2.0))
    x1 = min(width, math.floor(x0 + side) + 1)
    y1 = min(height, math.floor(y0 + side) + 1)
    return x0, y0, x1, y1


def cutout(img, v, cx, cy):
    """Cutout on an RGB PIL image: a square of side v * width centred at (cx, cy), filled."""
    box = cutout_box(v, cx, cy, *img.size)
    if box is None:
        return img
    x0, y0, x1, y1 = box
    pixels = np.array(img)
    pixels[y0:y1, x0:x1] = CUTOUT_FILL
    return Image.fromarray(pixels)


class RandAugment:
    """Strong-view augmentation on an RGB PIL image: 2 random ops, then Cutout."""

    def __call__(self, img, rng=random):
        for name, v in sample_ops(rng):
            img = apply_op(img, name, v)
        return cutout(img, *sample_cutout(*img.size, rng=rng))

    def __repr__(self):
        return f"RandAugment(n={OPS_PER_IMAGE}, ops={len(OPS)}, cutout<{CUTOUT_MAX})"
