"""Running sums that stay on the device.

Calling `.item()` on a CUDA tensor waits for the GPU; doing it every step leaves the GPU idle
while Python catches up. So per-step values are added into device tensors and read (one
transfer, plus one all-reduce under DDP) only when a log line, a progress bar refresh or an
epoch summary needs them.
"""
import torch

from .distributed import DistInfo, all_reduce_sum


class RunningSums:
    """Sample-weighted sums of named values plus a sample count."""

    def __init__(self, device):
        self.device = device
        self.sums = {}
        self.count = 0  # python int: batch sizes are known without a device sync

    def add(self, name, value, n):
        """Add `value * n` (value: a device scalar, the mean over `n` samples)."""
        value = value.detach().to(torch.float64) * n
        if name in self.sums:
            self.sums[name] += value
        else:
            self.sums[name] = value.clone()

    def add_sum(self, name, total):
        """Add an already-summed device value (e.g. a count of correct predictions)."""
        self.add(name, total, 1)

    def add_samples(self, n):
        self.count += n

    def read(self, info=DistInfo()):
        """{name: mean per sample} and the sample count, summed over ranks when distributed.
        Every rank must call this at the same point (it is a collective under DDP)."""
        names = sorted(self.sums)
        packed = torch.stack([self.sums[n] for n in names]
                             + [torch.tensor(float(self.count), dtype=torch.float64, device=self.device)])
        values = all_reduce_sum(packed, info).tolist()
        count = values[-1]
        means = {n: v / max(count, 1.0) for n, v in zip(names, values[:-1])}
        return means, int(count)


def correct_counts(logits, target, topk=(1,)):
    """Number of samples whose target is among the top-k logits, per k (device tensor)."""
    maxk = min(max(topk), logits.shape[1])
    pred = logits.topk(maxk, dim=1).indices
    hit = pred.eq(target.view(-1, 1))
    return torch.stack([hit[:, :min(k, maxk)].any(dim=1).sum() for k in topk])
