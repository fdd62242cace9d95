"""Logit-distillation losses as pure tensor functions.

Shapes: logits are `(..., B, C)` (batch B, classes C, any leading dims, e.g. a stack of views);
`target` is `(B,)` class indices. Student and teacher logits broadcast against each other, so
one call can compare a student with several targets (`s.unsqueeze(0)` vs `torch.stack([...])`).

Temperatures: a number gives one result; a sequence (or 1-D tensor) of K temperatures computes
all of them in one vectorised call and prepends a K dimension to the result. Losses are
`KL(teacher || student)` summed over classes, averaged over the batch, times T^2 (Hinton's
scaling), as in mdistiller.

No device or dtype is assumed: results follow the inputs, except that half-precision logits
are compared in float32 (softmax differences of nearby logits vanish in 8-bit mantissas).
"""
import functools
import numbers

import torch
import torch.nn.functional as F

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _full_precision(z):
    return z.float() if z.dtype in _LOW_PRECISION else z


@functools.lru_cache(maxsize=64)
def _temperature_tensor(values, device, dtype):
    # Cached so that a training loop does not copy the same list to the device at every step;
    # built as a normal tensor even inside inference_mode so that autograd may save it later.
    with torch.inference_mode(False):
        return torch.tensor(values, device=device, dtype=dtype)


def _temperatures(temperature, like):
    """A number (or 0-d tensor) stays as is; several temperatures become a 1-D tensor."""
    if isinstance(temperature, numbers.Real) or (torch.is_tensor(temperature) and temperature.dim() == 0):
        return temperature
    if torch.is_tensor(temperature):
        return temperature.to(device=like.device, dtype=like.dtype).reshape(-1)
    return _temperature_tensor(tuple(float(t) for t in temperature), like.device, like.dtype)


def _is_multi(T):
    return torch.is_tensor(T) and T.dim() == 1


def _divide(z, T):
    """z / T; with K temperatures the result gains a leading K dimension."""
    if _is_multi(T):
        return z / T.reshape(-1, *([1] * z.dim()))
    return z / T


def _times_t_squared(x, T):
    """x * T^2, matching a leading K dimension of `x` when there are K temperatures."""
    if _is_multi(T):
        return x * (T * T).reshape(-1, *([1] * (x.dim() - 1)))
    return x * (T * T)


def _kl_rows(log_p, log_q):
    """KL(p || q) over the last dim from log-probabilities; rows where p underflows to 0 add 0."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def _reduce_batch(per_sample, sample_weights, reduction):
    if sample_weights is not None:
        per_sample = per_sample * sample_weights
    if reduction == "mean":
        return per_sample.mean(-1)
    if reduction == "none":
        return per_sample
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


SWAP_MODES = ("max", "rotate")


def swap_logits(logits, target, mode="max"):
    """SLD's swap: where the argmax class `n` is not the target `t`, give `t` the top value.

    logits: (..., B, C); target: (B,) (broadcast over leading dims). Returns a new tensor of the
    same shape; rows already predicting `t` are unchanged. Only values move between classes (each
    row is permuted), so the row's mean and standard deviation stay as they were.
      mode "max" (the official swap): exchange the values at t and n.
      mode "rotate" (our variant, not the paper's): t takes the top value and every class that
        was ranked above t moves down one rank, keeping the order of all the non-target classes;
        with t ranked second both modes agree.
    Ties: if the target holds the maximum value, exchanging it with another maximal entry changes
    no value, so the result equals the input whichever maximal index `argmax` reports. Gradients
    follow the moved values (d out[n] / d in[t] = 1), exactly as the authors' in-place index
    swap; no detaching happens here.
    """
    if mode not in SWAP_MODES:
        raise ValueError(f"swap mode must be one of {SWAP_MODES}, got {mode!r}")
    target = target.expand(logits.shape[:-1]).unsqueeze(-1)
    source = (_max_swap_sources if mode == "max" else _rotate_sources)(logits, target)
    return logits.gather(-1, source)


def _max_swap_sources(logits, target):
    """Each class's source column: column n reads t, column t reads n, the others themselves."""
    top = logits.argmax(dim=-1, keepdim=True)
    column = torch.arange(logits.shape[-1], device=logits.device)
    return torch.where(column == top, target, torch.where(column == target, top, column))


def _rotate_sources(logits, target):
    """Source columns of the rotation, computed on the device (no host read, graph-capturable):
    in rank order, rank k < r (t's rank) reads rank k + 1's class, rank r reads rank 0's."""
    order = logits.sort(dim=-1, descending=True, stable=True).indices  # classes by rank
    rank = torch.arange(logits.shape[-1], device=logits.device)
    target_rank = (order == target).int().argmax(dim=-1, keepdim=True)
    from_rank = torch.where(rank < target_rank, rank + 1, torch.where(rank == target_rank, 0, rank))
    return torch.empty_like(order).scatter_(-1, order, order.gather(-1, from_rank))


def standardize_logits(logits, eps=1e-7):
    """Logit standardization (Sun et al., CVPR 2024): `(z - mean(z)) / (eps + std(z))` over the
    classes of each row, with the unbiased std (torch's default), as the authors' code. Applied
    to the student's and the teacher's logits before the temperature. Any permutation of a row
    (the SLD swap) leaves mean and std unchanged, so swapping and standardizing commute.
    Half-precision logits are standardized in float32 (see the module docstring)."""
    z = _full_precision(logits)
    return (z - z.mean(dim=-1, keepdim=True)) / (eps + z.std(dim=-1, keepdim=True))


def kd_loss(logits_student, logits_teacher, temperature, reduction="mean", sample_weights=None):
    """Hinton KD: `KL(softmax(t/T) || softmax(s/T)) * T^2`, summed over classes.

    logits_student, logits_teacher: broadcastable (..., B, C). temperature: a number, or K of them
    (result gets a leading K dim). reduction "mean" averages over the batch -> (K?, ...);
    "none" keeps (K?, ..., B). sample_weights (B,): per-sample factors applied before the mean
    (the mean still divides by B). Gradients flow into both arguments unless the caller detaches.
    """
    s, t = _full_precision(logits_student), _full_precision(logits_teacher)
    T = _temperatures(temperature, s)
    log_q = F.log_softmax(_divide(s, T), dim=-1)
    log_p = F.log_softmax(_divide(t, T), dim=-1)
    per_sample = _times_t_squared(_kl_rows(log_p, log_q), T)
    return _reduce_batch(per_sample, sample_weights, reduction)


def _target_and_others(z, target):
    """Split (..., B, C) logits into the target entry (..., B) and the others (..., B, C-1), in
    class order. Both by gather: a boolean mask would need the host to read the mask's count (a
    device sync every step, and no CUDA-graph capture)."""
    target = target.expand(z.shape[:-1]).unsqueeze(-1)
    z_target = z.gather(-1, target).squeeze(-1)
    columns = torch.arange(z.shape[-1] - 1, device=z.device)
    others = columns + (columns >= target).long()  # each row's class indices, its target skipped
    return z_target, z.gather(-1, others)


def dkd_terms(logits_student, logits_teacher, target, temperature, reduction="mean"):
    """Decoupled KD (Zhao et al. 2022): returns `(tckd, nckd)`, each times T^2.

    TCKD: KL between the binary distributions [p_target, 1 - p_target] (teacher || student).
    NCKD: KL between the softmaxes over the non-target classes only (target column dropped,
    so no log(0) and no -inf appear). Shapes and temperature handling as `kd_loss`.
    """
    s, t = _full_precision(logits_student), _full_precision(logits_teacher)
    T = _temperatures(temperature, s)
    binary, others = [], []
    for z in (t, s):
        z = _divide(z, T)
        z_target, z_others = _target_and_others(z, target)
        log_all = z.logsumexp(-1)
        # log p_target and log(1 - p_target) = logsumexp(others) - logsumexp(all), both stable
        binary.append(torch.stack([z_target - log_all, z_others.logsumexp(-1) - log_all], dim=-1))
        others.append(F.log_softmax(z_others, dim=-1))
    tckd = _times_t_squared(_kl_rows(*binary), T)
    nckd = _times_t_squared(_kl_rows(*others), T)
    return _reduce_batch(tckd, None, reduction), _reduce_batch(nckd, None, reduction)


def _gram_gap(logits_student, logits_teacher, temperature, weights, over_classes):
    s, t = _full_precision(logits_student), _full_precision(logits_teacher)
    T = _temperatures(temperature, s)
    grams = []
    for z in (t, s):
        p = F.softmax(_divide(z, T), dim=-1)
        # classes: p^T p is C x C (class co-activation); batch: p p^T is B x B (sample similarity)
        grams.append(p.transpose(-1, -2) @ p if over_classes else p @ p.transpose(-1, -2))
    gap = (grams[0] - grams[1]) ** 2
    if weights is not None:
        gap = gap * weights  # scales columns; the Gram gap is symmetric, so rows alike
    return gap.sum((-1, -2)) / gap.shape[-1]


def class_correlation_loss(logits_student, logits_teacher, temperature, class_weights=None):
    """MLKD class-level term: `sum((P_t^T P_t - P_s^T P_s)^2) / C` with P = softmax(z/T) (B x C).

    class_weights (C,): optional factors per class column, keeping the 1/C normalisation (so
    weights of 1 give the unweighted value). Returns (K?, ...) like `kd_loss`.
    """
    return _gram_gap(logits_student, logits_teacher, temperature, class_weights, over_classes=True)


def batch_correlation_loss(logits_student, logits_teacher, temperature, sample_weights=None):
    """MLKD batch-level term: `sum((P_t P_t^T - P_s P_s^T)^2) / B` with P = softmax(z/T) (B x C).

    sample_weights (B,): optional factors per sample column, keeping the 1/B normalisation.
    """
    return _gram_gap(logits_student, logits_teacher, temperature, sample_weights, over_classes=False)


def confidence_masks(logits_teacher):
    """MLKD's masks from the teacher's logits at T=1, without gradient.

    Returns `(sample_mask (B,), class_mask (C,))`, booleans: a sample is kept when its top
    probability is <= the batch median; a class when its probability summed over the batch is
    <= the median over classes. Medians interpolate linearly, as numpy.percentile(..., 50).
    """
    p = F.softmax(_full_precision(logits_teacher.detach()), dim=-1)
    confidence = p.max(dim=-1).values
    class_mass = p.sum(dim=0)
    return confidence <= confidence.quantile(0.5), class_mass <= class_mass.quantile(0.5)


def _pearson(a, b, dim, eps=1e-8):
    """Pearson correlation of a and b along `dim`, as the DIST authors compute it: the cosine
    similarity of the centred vectors with `eps` added to the product of their norms."""
    a = a - a.mean(dim=dim, keepdim=True)
    b = b - b.mean(dim=dim, keepdim=True)
    return (a * b).sum(dim) / (a.norm(dim=dim) * b.norm(dim=dim) + eps)


def dist_terms(logits_student, logits_teacher, temperature):
    """DIST (Huang et al., NeurIPS 2022): returns `(inter, intra)`, each times T^2, where with
    P = softmax(z / T) (B x C):
      inter = 1 - mean over samples of pearson(P_s[i, :], P_t[i, :])   (relation across classes)
      intra = 1 - mean over classes of pearson(P_s[:, c], P_t[:, c])   (relation across samples)
    Shapes: (..., B, C) broadcastable logits -> (...) each. A perfectly correlated pair gives 0.
    """
    s, t = _full_precision(logits_student), _full_precision(logits_teacher)
    p_s, p_t = F.softmax(s / temperature, dim=-1), F.softmax(t / temperature, dim=-1)
    scale = temperature * temperature
    inter = 1 - _pearson(p_s, p_t, dim=-1).mean(-1)
    intra = 1 - _pearson(p_s, p_t, dim=-2).mean(-1)
    return scale * inter, scale * intra
