"""Batched image ops on uint8 tensors that reproduce PIL's results, one magnitude per sample.

Images are uint8 tensors of shape (N, C, H, W) on any device; every RandAugment op here takes
a per-sample magnitude vector (N,), so each sample gets its own magnitude in one call
(torchvision v2 / kornia draw one op and magnitude for the whole batch: another distribution).
Nothing here reads a tensor value back to the host, so a GPU never waits for the CPU.

PIL conventions matched bit for bit (checked against Pillow and against the official outputs in
shared/compat/official_augment_ops.npz):
  * AFFINE transforms (rotate, shear, translate) map the *centre* (x + 0.5, y + 0.5) of each
    output pixel to input coordinates, take the input pixel containing that point (nearest)
    and fill black outside — in 16.16 fixed point for rotations and shears, as PIL does;
  * ImageEnhance blends as `uint8(float32(degenerate + f * (image - degenerate)))` — float32,
    truncated (factors in [0, 1] never need clipping);
  * grayscale (mode "L") is `(19595 R + 38470 G + 7471 B + 32768) >> 16`;
  * the SMOOTH filter rounds `sum(kernel * x) / 13` to nearest and leaves the border pixels;
  * autocontrast/equalize build PIL's per-channel lookup tables from the histograms.
"""
import contextlib
import functools

import torch
import torch.autograd.profiler
import torch.nn.functional as F


@functools.lru_cache(maxsize=None)
def constant(values, dtype, device):
    """A small constant tensor, made once per (values, dtype, device). Built from Python data
    on every call it would be copied host -> device each time, and a blocking copy from
    pageable memory first waits for the device to finish its queue."""
    return torch.tensor(values, dtype=dtype, device=device)


def label(name):
    """`record_function(name)` while a profiler records (`bench.profile_fast_pipeline` reads the
    labels), else nothing: entering a record_function costs ~10 us even with no profiler."""
    if torch.autograd.profiler._is_profiler_enabled:
        return torch.autograd.profiler.record_function(name)
    return contextlib.nullcontext()


# ------------------------------------------------------------------------ pixel gathers
# Geometric ops gather from a zero-padded copy of the image: every source pixel that falls
# outside the image is clamped onto the zero border, so no mask (comparisons and `where` are
# slow on the CPU) is needed for the black fill.


def _gather_padded(padded, index):
    """(N, C, Hp, Wp) images, (N, H*W) long flat indices into Hp*Wp -> (N, C, H*W)."""
    n, c = padded.shape[:2]
    return padded.reshape(n, c, -1).gather(2, index.unsqueeze(1).expand(n, c, index.shape[1]))


def crop_flip(images, offsets, flips, pad):
    """torchvision's RandomCrop(size, padding=pad) (zero fill) then a horizontal flip, per sample,
    for one or more views: (V*N, C, H, W), row v*N + i a crop of image i.

    offsets: (V*N, 2) long, the crop's top-left corner (row, column) in the padded image, each in
    [0, 2*pad]; flips: (V*N,) bool.

    One copy, no per-pixel gather: the images are zero-padded in both orientations (a flipped
    crop at column offset o is the mirrored image's crop at column 2*pad - o), `windows` views
    every H x W window of that buffer at once (overlapping, no copy), and one index_select
    copies each crop's channels — for every view together, so the padding is made once.
    """
    n, c, h, w = images.shape
    hp, wp = h + 2 * pad, w + 2 * pad
    padded = images.new_zeros(2, n, c, hp, wp)
    padded[0, ..., pad:pad + h, pad:pad + w] = images
    padded[1, ..., pad:pad + h, pad:pad + w] = images.flip(-1)
    flat = padded.view(-1)
    windows = flat.as_strided((flat.numel() - (h - 1) * wp - w + 1, h, w), (1, wp, 1))
    m = offsets.shape[0]
    image = torch.arange(m, device=images.device) % n
    column = torch.where(flips, 2 * pad - offsets[:, 1], offsets[:, 1])
    starts = (flips.long() * n + image) * (c * hp * wp) + offsets[:, 0] * wp + column  # (V*N,)
    channels = torch.arange(0, c * hp * wp, hp * wp, device=images.device)
    return windows.index_select(0, (starts.view(m, 1) + channels).view(-1)).view(m, c, h, w)


def affine(images, matrices, fixed_point):
    """PIL's `Image.transform(size, AFFINE, (a, b, c, d, e, f))` (nearest, black fill), per sample.

    matrices: (N, 6) float64; output pixel (x, y) reads the input pixel containing the point
    (a X + b Y + c, d X + e Y + f) for its centre X = x + 0.5, Y = y + 0.5. PIL computes that
    point on one of two paths, reproduced here:
      * fixed_point False, for b = d = 0 (translations): double precision (ImagingScaleAffine);
        the source column then depends on x only and the source row on y only;
      * fixed_point True, otherwise (rotations, shears): 16.16 fixed point (affine_fixed) —
        coefficients rounded to 1/65536, integer coordinates taken as `>> 16`; int32 holds
        every value while coordinates stay below 32768 (PIL's own condition for this path).
    """
    n, c, h, w = images.shape
    m = matrices.view(n, 2, 3)
    if fixed_point:
        offset = m[:, :, 2] + 0.5 * (m[:, :, 0] + m[:, :, 1])  # the half-pixel moves into the offset
        fixed = torch.floor(torch.cat([m[:, :, :2], offset.unsqueeze(2)], dim=2) * 65536 + 0.5).int()
        xs = torch.arange(w, device=images.device, dtype=torch.int32).view(1, 1, 1, w)
        ys = torch.arange(h, device=images.device, dtype=torch.int32).view(1, 1, h, 1)
        coefficient = lambda j: fixed[:, :, j].view(n, 2, 1, 1)
        source = (coefficient(0) * xs + (coefficient(1) * ys + coefficient(2))) >> 16  # (N, 2, H, W)
        x, y = source[:, 0], source[:, 1]
    else:
        centre = lambda size: torch.arange(size, device=images.device, dtype=torch.float64) + 0.5
        x = torch.floor(m[:, 0, :1] * centre(w) + m[:, 0, 2:]).int().view(n, 1, w)
        y = torch.floor(m[:, 1, 1:2] * centre(h) + m[:, 1, 2:]).int().view(n, h, 1)
    # Shift by one into a 1-pixel zero border; anything further out lands on the border.
    index = (y.clamp(-1, h) + 1) * (w + 2) + (x.clamp(-1, w) + 1)
    return _gather_padded(F.pad(images, (1, 1, 1, 1)), index.view(n, h * w).long()).view(n, c, h, w)


def _stack_rows(*columns):
    """(N, 6) float64 matrices from six columns, each a (N,) tensor or a constant."""
    like = next(col for col in columns if torch.is_tensor(col)).double()
    return torch.stack([col.double() if torch.is_tensor(col) else torch.full_like(like, col)
                        for col in columns], dim=1)


def identity_matrix(n, device):
    return constant((1.0, 0.0, 0.0, 0.0, 1.0, 0.0), torch.float64, device).expand(n, 6)


# Matrices (N, 6) for `affine`, from per-sample magnitudes v (N,) and the image size.
def rotate_matrix(v, height, width):
    """`img.rotate(v)`: counter-clockwise by v degrees about (W/2, H/2), same size.
    PIL builds the inverse rotation from cos/sin rounded to 15 decimals; so do we."""
    theta = -torch.deg2rad(v.double() % 360.0)
    cos = torch.round(torch.cos(theta), decimals=15)
    sin = torch.round(torch.sin(theta), decimals=15)
    cx, cy = width / 2.0, height / 2.0
    return _stack_rows(cos, sin, cos * -cx + sin * -cy + cx, -sin, cos, -sin * -cx + cos * -cy + cy)


def shear_x_matrix(v, height, width):
    return _stack_rows(1.0, v, 0.0, 0.0, 1.0, 0.0)


def shear_y_matrix(v, height, width):
    return _stack_rows(1.0, 0.0, 0.0, v, 1.0, 0.0)


def translate_x_matrix(v, height, width):
    """Shift by v * width pixels (positive v moves the content left, as in PIL)."""
    return _stack_rows(1.0, 0.0, v * width, 0.0, 1.0, 0.0)


def translate_y_matrix(v, height, width):
    return _stack_rows(1.0, 0.0, 0.0, 0.0, 1.0, v * height)


# ------------------------------------------------------------------------ lookup tables


def _level_index(images):
    """(N*C*H*W,) int32: each pixel's grey level plus 256 x its (sample, channel) plane — an
    index into N*C histograms or lookup tables of 256 levels laid end to end. int32 halves the
    memory traffic of int64, and both `bincount` and `index_select` take it."""
    n, c = images.shape[:2]
    planes = torch.arange(0, 256 * n * c, 256, device=images.device, dtype=torch.int32).view(n, c, 1, 1)
    return (images + planes).view(-1)


def apply_lut(images, lut, index=None):
    """images (N, C, H, W) uint8, lut (N, C, 256) integer -> uint8 images.
    `index`: `_level_index(images)` when the caller has it already."""
    index = _level_index(images) if index is None else index
    return lut.to(torch.uint8).view(-1).index_select(0, index).view(images.shape)


def channel_histograms(images, index=None):
    """(N, C, 256) int32: per sample and channel, the count of each grey level.
    `index`: `_level_index(images)` when the caller has it already."""
    n, c = images.shape[:2]
    index = _level_index(images) if index is None else index
    return torch.bincount(index, minlength=n * c * 256).view(n, c, 256).int()


def _lowest_highest_level(images):
    """Lowest and highest grey level present in each channel of each sample, (N, C, 1) long each."""
    pixels = images.view(*images.shape[:2], -1)
    # amin and amax, not aminmax: the latter has no vectorised uint8 kernel (30x slower here)
    return pixels.amin(-1, keepdim=True).long(), pixels.amax(-1, keepdim=True).long()


def autocontrast(images, v=None):
    """PIL `ImageOps.autocontrast(img)` (cutoff 0): per channel, stretch [lo, hi] to [0, 255].
    PIL computes `int(i * scale + offset)` in double precision; so do we. `v` is unused."""
    lo, hi = _lowest_highest_level(images)
    lo, hi = lo.double(), hi.double()
    # A true division: `255.0 / tensor` would multiply by a rounded reciprocal instead.
    scale = torch.full_like(lo, 255.0) / (hi - lo).clamp(min=1)
    levels = torch.arange(256, device=images.device, dtype=torch.float64)
    lut = torch.mul(levels, scale).add_(-lo * scale).trunc_().clamp_(0, 255)
    return apply_lut(images, torch.where(hi > lo, lut, levels))


def equalize(images, v=None):
    """PIL `ImageOps.equalize(img)`, per channel. `v` is unused.

    PIL: step = (pixels - count of the highest present level) // 255; if step is 0 or only one
    level is present the channel is unchanged, else lut[i] = (step // 2 + #pixels below i) //
    step, clipped to 255 when the table is applied. The table's division runs in float32 and
    is floored: exact, as numerator and step are integers far below 2**24 (CPUs have no vector
    integer division).
    """
    index = _level_index(images)
    hist = channel_histograms(images, index)
    lo, hi = _lowest_highest_level(images)
    step = (hist.sum(-1, keepdim=True, dtype=torch.int32) - hist.gather(-1, hi)) // 255
    below = hist.cumsum(-1, dtype=torch.int32).sub_(hist)
    lut = below.add_(step // 2).float().div_(step.clamp(min=1).float()).floor_().clamp_(max=255)
    keep = (step == 0) | (lo == hi)
    return apply_lut(images, torch.where(keep, torch.arange(256, device=images.device), lut), index)


def _per_sample(x, images):
    """A (N,) parameter shaped to broadcast over (N, C, H, W)."""
    return x.view(-1, *([1] * (images.dim() - 1)))


def posterize(images, v):
    """PIL `ImageOps.posterize(img, max(1, int(v)))`: keep the top bits of every level."""
    bits = torch.floor(v).long().clamp(1, 8)
    mask = (255 - (2 ** (8 - bits) - 1)).to(torch.uint8)
    return images & _per_sample(mask, images)


def solarize(images, v):
    """PIL `ImageOps.solarize(img, v)`: invert levels >= v, i.e. >= ceil(v) for integer levels.
    For uint8, 255 - x == x ^ 255: XOR with a mask that is 255 exactly where x >= threshold
    (the sign bit of the int16 x - threshold, inverted) — arithmetic instead of a slow `where`."""
    threshold = _per_sample(torch.ceil(v).clamp(0, 256).to(torch.int16), images)
    at_or_above = ~((images.short() - threshold) >> 15)  # -1 (all bits) where x >= threshold, else 0
    return images ^ at_or_above.to(torch.uint8)


def identity(images, v=None):
    return images


# ------------------------------------------------------------------ ImageEnhance blends


def blend(degenerate, images, factor):
    """PIL's `Image.blend(degenerate, image, factor)` for factor in [0, 1], as ImageEnhance uses.

    float32 subtract, multiply, add, truncate — the same operations as Pillow's C loop
    `degenerate + factor * (image - degenerate)`, hence bit-identical (kept as separate ops: a
    fused multiply-add would round differently); in place, one float buffer for all of them.
    """
    degenerate = degenerate.float()
    out = images.float().sub_(degenerate).mul_(_per_sample(factor.float(), images)).add_(degenerate)
    return out.to(torch.uint8)


def grayscale(images):
    """PIL's RGB -> "L" conversion, (N, 1, H, W) int32."""
    x = images.int()
    return (x[:, 0:1] * 19595 + x[:, 1:2] * 38470 + x[:, 2:3] * 7471 + 32768) >> 16


def smooth_interior(images):
    """PIL's ImageFilter.SMOOTH (kernel [[1,1,1],[1,5,1],[1,1,1]] / 13, rounded to nearest) at
    the pixels off the border (PIL leaves the border rows and columns unchanged): (N, C, H-2,
    W-2) float32 holding integers."""
    x = images.float()  # integer sums below 2**24: exact in float32, in any order
    rows = x[..., :-2] + x[..., 1:-1]
    rows += x[..., 2:]  # 3-wide sums along each row
    total = x[..., 1:-1, 1:-1] * 4
    for top in range(3):
        total += rows[..., top:top + total.shape[-2], :]
    # sum / 13 is never halfway between integers, so floor((sum + 6) / 13) rounds exactly; the
    # division is exact at multiples of 13 and at least 1/13 away from the next integer otherwise.
    return total.add_(6).div_(13).floor_()


def smooth(images):
    """PIL's ImageFilter.SMOOTH, uint8 in and out, border pixels unchanged."""
    out = images.clone()
    out[..., 1:-1, 1:-1] = smooth_interior(images)
    return out


def brightness(images, v):
    """ImageEnhance.Brightness: blend with black, `0 + f * (image - 0)`, which is exactly
    `f * image` (adding or subtracting a zero changes no float)."""
    return images.float().mul_(_per_sample(v.float(), images)).to(torch.uint8)


def contrast(images, v):
    """ImageEnhance.Contrast: blend with a grey image at int(mean of the L image + 0.5)."""
    gray = grayscale(images)
    pixels = gray.shape[-1] * gray.shape[-2]
    total = gray.sum(dim=(1, 2, 3), dtype=torch.long)
    mean = torch.div(2 * total + pixels, 2 * pixels, rounding_mode="floor")  # exact int(m + 0.5)
    return blend(_per_sample(mean, images), images, v)


def color(images, v):
    """ImageEnhance.Color: blend with the grayscale image."""
    return blend(grayscale(images), images, v)


def sharpness(images, v):
    """ImageEnhance.Sharpness: blend with the SMOOTH-filtered image. On the border the filtered
    image is the image itself and the blend gives it back unchanged: only the interior is blended."""
    out = images.clone()
    out[..., 1:-1, 1:-1] = blend(smooth_interior(images), images[..., 1:-1, 1:-1], v)
    return out


# ------------------------------------------------------------------------ cutout, tensor


def cutout(images, side, centre_x, centre_y, fill):
    """The official FixMatch-style CutoutAbs drawn with PIL's `rectangle`, per sample.

    side, centre_x, centre_y: (N,) float (pixels); fill: one level per channel.
    x0 = int(max(0, cx - side/2)), x1 = min(W, x0 + side); PIL truncates the float corner and
    fills columns x0..x1 *inclusive* (a side of s covers int(s) + 1 pixels unless clipped).
    A side of 0 leaves the image unchanged (the official code returns early).
    """
    n, c, h, w = images.shape
    x0 = torch.floor(torch.clamp(centre_x - side / 2, min=0))
    y0 = torch.floor(torch.clamp(centre_y - side / 2, min=0))
    x1 = torch.floor(torch.clamp(x0 + side, max=w))
    y1 = torch.floor(torch.clamp(y0 + side, max=h))
    cols = torch.arange(w, device=images.device, dtype=side.dtype)
    rows = torch.arange(h, device=images.device, dtype=side.dtype)
    in_cols = (cols >= x0.unsqueeze(1)) & (cols <= x1.unsqueeze(1)) & (side > 0).unsqueeze(1)
    in_rows = (rows >= y0.unsqueeze(1)) & (rows <= y1.unsqueeze(1))
    # 255 inside the square, 0 outside; blend with bitwise ops (a `where` is slow on the CPU):
    # x ^ ((x ^ colour) & inside) is the colour inside and x outside.
    inside = (in_rows.unsqueeze(2) & in_cols.unsqueeze(1)).to(torch.uint8).mul_(255).unsqueeze(1)
    colour = constant(tuple(fill), torch.uint8, images.device).view(1, c, 1, 1)
    return torch.bitwise_xor(images, colour).bitwise_and_(inside).bitwise_xor_(images)


def normalize(images, mean, std, dtype=torch.float32, channels_last=False):
    """uint8 (N, C, H, W) -> `(x / 255 - mean) / std`, with torchvision's ToTensor + Normalize
    float32 operations in the same order (so bit-identical to the PIL path), then cast to
    `dtype` and to channels_last memory format on request."""
    c = images.shape[1]
    mean_t = constant(tuple(mean), torch.float32, images.device).view(1, c, 1, 1)
    std_t = constant(tuple(std), torch.float32, images.device).view(1, c, 1, 1)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    # The uint8 -> float32 conversion writes the layout too: one pass instead of two.
    out = torch.empty(images.shape, dtype=torch.float32, device=images.device, memory_format=layout)
    return out.copy_(images).div_(255).sub_(mean_t).div_(std_t).to(dtype)


# RandAugment ops by their names in `mdistiller.data.randaugment.OPS`. Geometric ops are
# matrix builders, grouped by PIL's arithmetic (fixed point or not) so that the ops of one group
# run as a single `affine` call; the others are image functions.
GEOMETRIC_OPS = {
    "Rotate": rotate_matrix,
    "ShearX": shear_x_matrix,
    "ShearY": shear_y_matrix,
    "TranslateX": translate_x_matrix,
    "TranslateY": translate_y_matrix,
}
FIXED_POINT_OPS = ("Rotate", "ShearX", "ShearY")  # nonzero b or d: PIL's fixed-point path
POINT_OPS = {
    "AutoContrast": autocontrast,
    "Brightness": brightness,
    "Color": color,
    "Contrast": contrast,
    "Equalize": equalize,
    "Identity": identity,
    "Posterize": posterize,
    "Sharpness": sharpness,
    "Solarize": solarize,
}
