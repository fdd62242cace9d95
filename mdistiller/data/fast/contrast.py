"""CRD's contrastive indices on the device, a whole batch at a time (the fast loader's version of
`data.datasets.ContrastSampler`, with the same distribution):

  * row i is [positive, k negatives] for sample `index[i]` of class c;
  * negatives are drawn uniformly from the samples of the other classes, without replacement
    when k is at most their number (CIFAR-100: 16,384 of 49,500), with replacement otherwise;
  * the positive is the sample itself ("exact") or a uniform sample of class c ("relax").

Without replacement, a uniform k-subset is the k largest of independent uniform keys, one key per
training sample with the own class's keys pushed below every other (`topk`); with replacement, a
uniform slot among the other classes' samples, which are kept grouped by class, skips over the
own class's block. Both are a handful of batched ops, with no host reads while training.
"""
import torch


class DeviceContrastSampler:
    """`sample(index, target, generator)` -> (B, k + 1) long indices into the training set."""

    def __init__(self, labels, k, mode="exact"):
        if mode not in ("exact", "relax"):
            raise ValueError(f"CRD mode must be 'exact' or 'relax', got {mode!r}")
        self.labels, self.k, self.mode = labels, k, mode
        self.by_class = torch.argsort(labels, stable=True)  # sample indices grouped by class
        self.count = torch.bincount(labels)
        self.start = torch.cumsum(self.count, 0) - self.count
        present = self.count[self.count > 0]  # read once here, never per batch
        others = len(labels) - present
        # with replacement for every row, for none, or row by row (classes of very different sizes)
        self.replace_all = k > int(others.max())
        self.replace_none = k <= int(others.min())

    def sample(self, index, target, generator):
        c = target
        count, start = self.count[c], self.start[c]
        others = len(self.labels) - count
        if self.mode == "exact":
            positive = index
        else:
            positive = self.by_class[start + self._below(count, 1, generator).squeeze(1)]
        if self.replace_none:
            negatives = self._without_replacement(target, generator)
        elif self.replace_all:
            negatives = self._with_replacement(others, start, count, generator)
        else:
            negatives = torch.where((self.k > others).unsqueeze(1),
                                    self._with_replacement(others, start, count, generator),
                                    self._without_replacement(target, generator))
        return torch.cat([positive.unsqueeze(1), negatives], dim=1)

    def _below(self, bound, columns, generator):
        """(B, columns) uniform integers in [0, bound[i]) (bound >= 1 per row)."""
        u = torch.rand(len(bound), columns, generator=generator, device=bound.device)
        return torch.minimum((u * bound.unsqueeze(1)).long(), (bound - 1).unsqueeze(1))

    def _with_replacement(self, others, start, count, generator):
        slots = self._below(others, self.k, generator)
        slots = slots + count.unsqueeze(1) * (slots >= start.unsqueeze(1))  # step over the own class
        return self.by_class[slots]

    def _without_replacement(self, target, generator):
        keys = torch.rand(len(target), len(self.labels), generator=generator, device=target.device)
        keys.masked_fill_(self.labels.unsqueeze(0) == target.unsqueeze(1), -1.0)
        return keys.topk(self.k, dim=1, sorted=False).indices
