"""SLD's mechanism in numbers: how often the swap fires, and how wrong the swapped rows are.

Pure functions of logits and targets, computed on the logits' device with tensor ops only (no
`.item()`, no `bincount`), so a training step that reports them never waits for the GPU.

Each statistic is a ratio kept as `(numerator, denominator)` device tensors, so that sums over
steps (and over DDP ranks) give the exact epoch value, not a mean of per-batch ratios:

  swap.<who>[_<view>]        percent of rows a swap changes: the target's logit is below the
                             row maximum. A tie at the maximum is no swap (exchanging two equal
                             values changes nothing, see `losses.swap_logits`).
  swap.rank_<who>[_<view>]   mean rank of the target among the logits of those swapped rows
                             (1 = highest logit, so always >= 2 there): how far down the teacher
                             (or student) put the right class when it was wrong.
  <who>.class_error          per-class vectors (C,): percent of the class's rows that are
                             swapped, i.e. where `who` does not rank the target first.

`who` is "teacher" or "student"; views are named "weak"/"strong" for two views and left out for
one.
"""
import torch

VIEW_NAMES = {1: ("",), 2: ("weak", "strong")}


def view_names(num_views):
    return VIEW_NAMES.get(num_views) or tuple(f"view{i + 1}" for i in range(num_views))


def as_views(logits):
    """(V, B, C) from a (B, C) tensor, a (V, B, C) tensor or a sequence of (B, C) tensors."""
    if not torch.is_tensor(logits):
        logits = torch.stack(list(logits))
    return logits.unsqueeze(0) if logits.dim() == 2 else logits


def classes_above_target(logits, target):
    """(..., B) number of classes whose logit is strictly above the target's. 0: the target is
    (tied) first and the swap changes nothing; k > 0: the row is swapped and the target ranks k+1."""
    logits = logits.detach()
    target_logit = logits.gather(-1, target.expand(logits.shape[:-1]).unsqueeze(-1))
    return (logits > target_logit).sum(-1)


def swap_statistics(logits, target, who):
    """{"swap.<who>[_view]": (100 * swapped rows, rows), "swap.rank_<who>[_view]": (sum of target
    ranks over swapped rows, swapped rows)} per view of `logits` ((V, B, C) or (B, C))."""
    logits = as_views(logits)
    above = classes_above_target(logits, target)  # (V, B)
    swapped = above > 0
    n_swapped = swapped.sum(-1).double()
    rank_sum = torch.where(swapped, above + 1, torch.zeros_like(above)).sum(-1).double()
    rows = torch.full_like(n_swapped, logits.shape[-2])
    stats = {}
    for v, view in enumerate(view_names(logits.shape[0])):
        suffix = f"_{view}" if view else ""
        stats[f"swap.{who}{suffix}"] = (100.0 * n_swapped[v], rows[v])
        stats[f"swap.rank_{who}{suffix}"] = (rank_sum[v], n_swapped[v])
    return stats


def class_error_statistics(logits, target, who, num_classes=None):
    """{"<who>.class_error": (100 * swapped rows per class (C,), rows per class (C,))}, summed
    over the views of `logits`; rows are attributed to their target class."""
    logits = as_views(logits)
    num_classes = num_classes or logits.shape[-1]
    swapped = classes_above_target(logits, target) > 0  # (V, B)
    labels = target.expand(swapped.shape).reshape(-1)
    errors = torch.zeros(num_classes, dtype=torch.float64, device=logits.device)
    errors.index_add_(0, labels, swapped.reshape(-1).double())
    rows = torch.zeros_like(errors).index_add_(0, labels, torch.ones_like(errors[:1]).expand(labels.shape[0]))
    return {f"{who}.class_error": (100.0 * errors, rows)}


def teacher_statistics(teacher_logits, target):
    """What a swapped-teacher distiller reports every step: swap rate and target rank per view,
    and the teacher's per-class error on the training views."""
    stats = swap_statistics(teacher_logits, target, "teacher")
    stats.update(class_error_statistics(teacher_logits, target, "teacher"))
    return stats
