"""Weak and strong views of a whole uint8 batch at once, each sample with its own random draws.

Same distribution as the PIL pipeline (`mdistiller.data.transforms` / `randaugment`):
  weak:   RandomCrop(32, padding=4, zero fill) -> horizontal flip (p = 1/2)
  strong: an independent crop/flip -> `OPS_PER_IMAGE` RandAugment ops drawn with replacement
          from `OPS` (magnitudes uniform in their ranges) -> Cutout
The op table and the Cutout constants are imported from the PIL path, so both draw from one
table. All random draws come from a `torch.Generator` on the images' device.
"""
import torch

from ..randaugment import CUTOUT_FILL, CUTOUT_MAX, OPS, OPS_PER_IMAGE
from . import ops

PAD = 4  # RandomCrop padding of the CIFAR pipeline


class OpTable:
    """The RandAugment op table as batched kernels and magnitude ranges.

    Each op runs through a *kernel*: the geometric ops share two (one per PIL arithmetic path;
    a per-sample affine matrix, one gather each), every other op has its own.
    `kernel_of_op[i]` is op i's kernel.
    """

    def __init__(self, table=OPS):
        self.names = [name for name, _, _ in table]
        unknown = [name for name in self.names if name not in ops.GEOMETRIC_OPS and name not in ops.POINT_OPS]
        if unknown:
            raise ValueError(f"the fast pipeline has no batched version of op(s) {', '.join(unknown)}")
        self.low = tuple(float(low) for _, low, _ in table)
        self.high = tuple(float(high) for _, _, high in table)
        self.kernels, self.kernel_names, kernel_of = [], [], {}
        for name in self.names:
            if name in ops.POINT_OPS:
                kernel_of[name] = len(self.kernels)
                self.kernels.append(_point_kernel(ops.POINT_OPS[name]))
                self.kernel_names.append(name)
        for fixed_point in (True, False):
            group = [(i, ops.GEOMETRIC_OPS[name]) for i, name in enumerate(self.names)
                     if name in ops.GEOMETRIC_OPS and (name in ops.FIXED_POINT_OPS) == fixed_point]
            if group:
                kernel_of.update({self.names[i]: len(self.kernels) for i, _ in group})
                self.kernels.append(_geometric_kernel(group, fixed_point))
                self.kernel_names.append("+".join(self.names[i] for i, _ in group))
        self.kernel_of_op = tuple(kernel_of[name] for name in self.names)

    def __len__(self):
        return len(self.names)

    def sample(self, n, count, generator, device):
        """(op ids (N, count) long, magnitudes (N, count) float64), as `randaugment.sample_ops`
        draws them: ops uniformly with replacement, magnitudes uniform in [low, high)."""
        op_ids = torch.randint(len(self.names), (n, count), generator=generator, device=device)
        u = torch.rand((n, count), generator=generator, device=device, dtype=torch.float64)
        low = ops.constant(self.low, torch.float64, device)[op_ids]
        high = ops.constant(self.high, torch.float64, device)[op_ids]
        return op_ids, low + (high - low) * u


def _point_kernel(function):
    return lambda images, op_ids, magnitudes: function(images, magnitudes)


def _geometric_kernel(group, fixed_point):
    """Every sample's op from `group` ((op id, matrix builder) pairs) in one affine gather;
    samples with another op get the identity (their result is not used)."""
    def kernel(images, op_ids, magnitudes):
        n, _, h, w = images.shape
        matrices = ops.identity_matrix(n, images.device)
        for i, build in group:
            matrices = torch.where((op_ids == i).unsqueeze(1), build(magnitudes, h, w), matrices)
        return ops.affine(images, matrices, fixed_point)
    return kernel


def apply_ops(images, op_ids, magnitudes, table, grouped=None):
    """One RandAugment step: sample i gets op `table.names[op_ids[i]]` with `magnitudes[i]`.

    images: (N, C, H, W) uint8; op_ids: (N,) long; magnitudes: (N,) float64 (op units).
    grouped (default: on the CPU): sort the samples by kernel and run each kernel on its own
    samples only — the group sizes are read back to the host, which is free on the CPU. Not
    grouped (default on accelerators): every kernel runs on the whole batch and `torch.where`
    keeps each sample's own result, so no kernel ever waits for a device-to-host copy.
    """
    kernel_ids = ops.constant(table.kernel_of_op, torch.long, images.device)[op_ids]
    if grouped is None:
        grouped = images.device.type == "cpu"
    if not grouped:
        out = images
        for k, kernel in enumerate(table.kernels):
            out = torch.where((kernel_ids == k).view(-1, 1, 1, 1), kernel(images, op_ids, magnitudes), out)
        return out
    order = torch.argsort(kernel_ids, stable=True)
    counts = torch.bincount(kernel_ids, minlength=len(table.kernels)).tolist()
    # index_select, not `x[order]`: the latter is many times slower on CPU tensors.
    images, op_ids, magnitudes = (x.index_select(0, order) for x in (images, op_ids, magnitudes))
    pieces, start = [], 0
    for kernel, name, count in zip(table.kernels, table.kernel_names, counts):
        if count:
            end = start + count
            with ops.label(f"fast.{name}"):  # a label for `bench.profile_fast_pipeline`
                pieces.append(kernel(images[start:end], op_ids[start:end], magnitudes[start:end]))
            start = end
    return torch.cat(pieces).index_select(0, torch.argsort(order))


def sample_crop_flip(n, generator, device, pad=PAD):
    """Crop corners (N, 2) uniform in 0..2*pad and flips (N,) with probability 1/2."""
    offsets = torch.randint(2 * pad + 1, (n, 2), generator=generator, device=device)
    flips = torch.rand(n, generator=generator, device=device) < 0.5
    return offsets, flips


def sample_cutout(n, width, height, generator, device):
    """Side (pixels) and centre per sample, drawn as `randaugment.sample_cutout` does
    (centre in (1, size]: the official `np.random.uniform(size)` quirk)."""
    u = torch.rand((n, 3), generator=generator, device=device, dtype=torch.float64)
    side = u[:, 0] * CUTOUT_MAX * width
    centre_x = width + (1 - width) * u[:, 1]
    centre_y = height + (1 - height) * u[:, 2]
    return side, centre_x, centre_y


def weak_view(images, generator, pad=PAD):
    """Pad-crop + flip, each sample its own draw. uint8 in and out."""
    with ops.label("fast.crop_flip"):
        return ops.crop_flip(images, *sample_crop_flip(images.shape[0], generator, images.device, pad), pad)


def randaugment(images, generator, table, num_ops=OPS_PER_IMAGE):
    """`num_ops` RandAugment ops then Cutout, each sample its own draws. uint8 in and out."""
    n, _, h, w = images.shape
    op_ids, magnitudes = table.sample(n, num_ops, generator, images.device)
    for k in range(num_ops):
        images = apply_ops(images, op_ids[:, k], magnitudes[:, k], table)
    with ops.label("fast.cutout"):
        return ops.cutout(images, *sample_cutout(n, w, h, generator, images.device), fill=CUTOUT_FILL)


def strong_view(images, generator, table, pad=PAD, num_ops=OPS_PER_IMAGE):
    """Pad-crop + flip (its own draw), then RandAugment + Cutout. uint8 in and out."""
    return randaugment(weak_view(images, generator, pad), generator, table, num_ops)


def weak_and_strong_views(images, generator, table, pad=PAD, num_ops=OPS_PER_IMAGE):
    """`(weak_view(images, generator), strong_view(images, generator, table))` with the same
    draws in the same order, both crops made by one `ops.crop_flip` call (one padding)."""
    n = images.shape[0]
    weak_draws = sample_crop_flip(n, generator, images.device, pad)
    strong_draws = sample_crop_flip(n, generator, images.device, pad)
    with ops.label("fast.crop_flip"):
        crops = ops.crop_flip(images, *(torch.cat(pair) for pair in zip(weak_draws, strong_draws)), pad)
    return crops[:n], randaugment(crops[n:], generator, table, num_ops)
