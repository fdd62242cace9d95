"""Pure feature-distillation losses: tensors in, scalar (or tensor) out, no modules, no state.

Each function implements one paper's definition for ONE pair of student/teacher features;
the distillers sum them over stages and apply the config weights. Normalisations (what is
summed, what is averaged) follow mdistiller's implementations so its default weights keep
their meaning; the docstrings say which.

Feature maps are (B, C, H, W); vectors are (B, D). Teacher inputs are expected to carry no
gradient (they come from the no-grad teacher pass); functions never rely on it.
"""
import math

import torch
import torch.nn.functional as F


def match_spatial(f_s, f_t):
    """Average-pool whichever map is larger so both have the smaller one's H x W."""
    s_size, t_size = f_s.shape[-2:], f_t.shape[-2:]
    if s_size[0] > t_size[0]:
        f_s = F.adaptive_avg_pool2d(f_s, t_size)
    elif s_size[0] < t_size[0]:
        f_t = F.adaptive_avg_pool2d(f_t, s_size)
    return f_s, f_t


# ----------------------------------------------------------------------------- AT
def attention_map(feat, p=2.0):
    """AT (Zagoruyko & Komodakis 2017): spatial attention = channel-mean of |A|^p, flattened
    and L2-normalised per sample. (Mean instead of the paper's sum: identical after the norm.)"""
    return F.normalize(feat.abs().pow(p).mean(dim=1).flatten(1), dim=1)


def at_loss(f_s, f_t, p=2.0):
    """Squared distance of normalised attention maps, averaged over batch and positions."""
    f_s, f_t = match_spatial(f_s, f_t)
    return (attention_map(f_s, p) - attention_map(f_t, p)).pow(2).mean()


# ----------------------------------------------------------------------------- NST
def nst_loss(f_s, f_t):
    """NST (Huang & Wang 2017): squared MMD between the sets of channel maps ("neurons") with
    the degree-2 polynomial kernel k(x, y) = (x.y)^2 on L2-normalised maps. Kernel means are over
    channel pairs and the batch; the teacher-teacher term is a constant for the student."""
    f_s, f_t = match_spatial(f_s, f_t)
    s = F.normalize(f_s.flatten(2), dim=2)
    t = F.normalize(f_t.flatten(2), dim=2)

    def kernel_mean(a, b):
        return torch.bmm(a, b.transpose(1, 2)).pow(2).mean()

    return kernel_mean(t, t) + kernel_mean(s, s) - 2 * kernel_mean(s, t)


# ----------------------------------------------------------------------------- PKT
def pkt_loss(f_s, f_t, eps=1e-7):
    """PKT (Passalis & Tefas 2018): KL between the conditional probability distributions that
    the cosine-similarity kernel K = (cos + 1) / 2 induces over the batch (row-normalised,
    diagonal included). Averaged over all B x B entries (mdistiller's normalisation)."""
    def conditional(x):
        x = torch.nan_to_num(x / (x.norm(dim=1, keepdim=True) + eps))
        kernel = (x @ x.t() + 1.0) / 2.0
        return kernel / kernel.sum(dim=1, keepdim=True)

    p_s, p_t = conditional(f_s.flatten(1)), conditional(f_t.flatten(1))
    return (p_t * torch.log((p_t + eps) / (p_s + eps))).mean()


# ----------------------------------------------------------------------------- SP
def sp_loss(f_s, f_t):
    """SP (Tung & Mori 2019): ||G_t - G_s||_F^2 / B^2, G = row-L2-normalised F F^T (B x B)."""
    def similarity(f):
        f = f.flatten(1)
        return F.normalize(f @ f.t(), dim=1)

    return (similarity(f_t) - similarity(f_s)).pow(2).sum() / f_s.shape[0] ** 2


# ----------------------------------------------------------------------------- RKD
def pairwise_distances(e, squared=False, eps=1e-12):
    """B x B Euclidean distances (clamped at eps before the root, zero diagonal)."""
    sq = e.pow(2).sum(dim=1)
    d = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * e @ e.t()).clamp(min=eps)
    if not squared:
        d = d.sqrt()
    return d * (1 - torch.eye(len(e), dtype=d.dtype, device=d.device))


def rkd_distance_loss(f_s, f_t, squared=False, eps=1e-12):
    """RKD-D (Park et al. 2019): Huber loss between pairwise distances, each divided by the
    mean distance over distinct pairs (so the loss ignores the features' overall scale)."""
    def normalised(f):
        d = pairwise_distances(f.flatten(1), squared, eps)
        # the mean over d > 0 (the off-diagonal pairs; d is 0 elsewhere), without a boolean
        # index: that would make the host wait for the device every step
        return d / (d.sum() / (d > 0).sum())

    return F.smooth_l1_loss(normalised(f_s), normalised(f_t))


def rkd_angle_loss(f_s, f_t):
    """RKD-A: Huber loss between the cosines of all angles e_ij . e_ik (vertex i) of triplets."""
    def cosines(f):
        f = f.flatten(1)
        edges = F.normalize(f.unsqueeze(0) - f.unsqueeze(1), dim=2)  # [i, j] = unit(f_j - f_i)
        return torch.bmm(edges, edges.transpose(1, 2)).flatten()

    return F.smooth_l1_loss(cosines(f_s), cosines(f_t))


# ----------------------------------------------------------------------------- VID
def vid_loss(pred_mean, f_t, log_scale, eps=1e-5):
    """VID (Ahn et al. 2019): negative log-likelihood of the teacher feature under a Gaussian
    with the regressed mean and a per-channel variance softplus(log_scale) + eps, up to the
    constant log(2 pi)/2; averaged over all elements."""
    var = (F.softplus(log_scale) + eps).view(1, -1, 1, 1)
    return (0.5 * ((pred_mean - f_t).pow(2) / var + var.log())).mean()


def vid_log_scale_init(init_var, eps=1e-5):
    """The log_scale whose softplus(.) + eps equals init_var (softplus inverse)."""
    return math.log(math.expm1(init_var - eps))


# ----------------------------------------------------------------------------- OFD
def ofd_margin(bn_weight, bn_bias):
    """OFD (Heo et al. 2019) margin per channel: E[x | x < 0] for x ~ N(bias, weight^2), the
    distribution a BatchNorm feeds into the following ReLU. Where the negative side has almost
    no mass (Phi(-mu/sigma) <= 0.001) the expectation is numerically unstable; -3 sigma is used."""
    sigma, mu = bn_weight.detach().abs().double(), bn_bias.detach().double()
    z = -mu / sigma
    cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    pdf = torch.exp(-z.pow(2) / 2) / math.sqrt(2 * math.pi)
    margin = torch.where(cdf > 0.001, mu - sigma * pdf / cdf.clamp(min=1e-12), -3 * sigma)
    return margin.float()


def ofd_loss(f_s, f_t, margin):
    """OFD partial L2 towards the margin-ReLU teacher target T = max(t, margin): no loss where
    the student is already below a non-positive target (both are cut by the ReLU), squared
    error elsewhere. Summed over C, H, W and averaged over the batch."""
    target = torch.max(f_t, margin.view(1, -1, 1, 1).to(f_t))
    active = (f_s > target) | (target > 0)
    return ((f_s - target).pow(2) * active).sum() / f_s.shape[0]


# ----------------------------------------------------------------------------- KDSVD
def top_singular_vectors(feat, k, axis="channels"):
    """Right singular vectors of each sample's feature map, keeping the k largest; vectors and
    the k singular values L2-normalised. `axis` "channels": the map as an (H*W) x C matrix, so
    the vectors live in channel space (the paper); "width": as a (C*H) x W matrix (mdistiller's
    port). Returns (vectors (B, C or W, k), values (B, k), finite (B,)). NaN/inf from degenerate
    SVDs become 0 (as mdistiller's removenan). A map holding NaN/inf is decomposed as zeros and
    flagged in `finite` instead: torch.linalg.svd raises on such input, and the caller turns the
    flag into a NaN loss term, which the trainer reports by name. Half precision is computed in
    float32 (no half SVD)."""
    x = feat.flatten(2).transpose(1, 2) if axis == "channels" else feat.flatten(1, 2)
    x = x if x.dtype == torch.float64 else x.float()
    finite = torch.isfinite(x).flatten(1).all(dim=1)
    x = torch.where(finite[:, None, None], x, torch.zeros((), dtype=x.dtype, device=x.device))
    _, values, vh = torch.linalg.svd(x, full_matrices=False)
    vectors = torch.nan_to_num(vh.transpose(1, 2)[:, :, :k], nan=0.0, posinf=0.0, neginf=0.0)
    values = torch.nan_to_num(values[:, :k], nan=0.0, posinf=0.0, neginf=0.0)
    return F.normalize(vectors, dim=1), F.normalize(values, dim=1), finite


def align_singular_vectors(v_s, v_t):
    """For each teacher vector pick the student vector with the largest |cosine| and flip its
    sign to match (singular vectors are defined up to sign and order). (B, C, k_s) -> (B, C, k_t)."""
    cosine = v_s.transpose(1, 2) @ v_t  # (B, k_s, k_t)
    best = cosine.abs().argmax(dim=1, keepdim=True)
    select = torch.zeros_like(cosine).scatter(1, best, 1.0) * torch.sign(cosine)
    return v_s @ select


def kdsvd_loss(feats_s, feats_t, k=1, axis="channels"):
    """KDSVD (Lee et al. 2018): compress each stage into its top-k singular vectors (student:
    k + 3 candidates aligned to the teacher's k), scale both by the teacher's singular values,
    and match the RBF maps exp(-(v_i - v_{i-1})^2 / 8) between consecutive stages, element-wise
    over all channel pairs. Sum of squared differences divided by the batch size. `axis`: see
    top_singular_vectors ("width" gives mdistiller's loss, over pairs of width positions).
    NaN when any feature map holds NaN/inf (never an SVD error), so the term is named.

    As mdistiller's, the SVD's backward divides by differences of squared singular values: a
    student map with fewer than k + 3 distinct non-zero singular values (e.g. a (C*H) x W map
    of rank < k + 3) gives a finite loss but non-finite gradients, and the next step's features
    are NaN. Non-finite squared differences are zeroed, as mdistiller does."""
    def rbf(v, v_prev):
        return torch.exp(-(v.unsqueeze(2) - v_prev.unsqueeze(1)).pow(2) / 8)

    loss, prev, finite = 0.0, None, True
    for f_s, f_t in zip(feats_s, feats_t):
        v_t, s_t, finite_t = top_singular_vectors(f_t, k, axis)
        v_s, _, finite_s = top_singular_vectors(f_s, k + 3, axis)
        finite = finite & finite_t.all() & finite_s.all()
        v_s = align_singular_vectors(v_s, v_t)
        scale = s_t.unsqueeze(1)
        v_s, v_t = v_s * scale, v_t * scale
        if prev is not None:
            diff = (rbf(v_s, prev[0]) - rbf(v_t, prev[1]).detach()).pow(2)
            loss = loss + torch.nan_to_num(diff, nan=0.0, posinf=0.0, neginf=0.0).sum()
        prev = (v_s, v_t)
    return loss / feats_s[0].shape[0] + torch.where(finite, 0.0, float("nan"))  # NaN if flagged; no host sync


# ----------------------------------------------------------------------------- ReviewKD
def hcl_loss(f_s, f_t, levels=(4, 2, 1)):
    """ReviewKD (Chen et al. 2021) hierarchical context loss for one stage: MSE at full
    resolution plus MSE after average-pooling to each pyramid size smaller than the map, the
    k-th pooled level weighted 2^-k; the sum is divided by the total weight."""
    loss, total, weight = F.mse_loss(f_s, f_t), 1.0, 1.0
    for size in levels:
        if size >= f_s.shape[-2]:
            continue
        weight /= 2.0
        loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(f_s, size), F.adaptive_avg_pool2d(f_t, size))
        total += weight
    return loss / total


# ----------------------------------------------------------------------------- CRD
def crd_nce_loss(scores, num_data, eps=1e-7):
    """CRD (Tian et al. 2020) NCE loss. `scores` (B, K + 1): normalised exponentiated
    similarities, column 0 the positive pair, the rest K negatives drawn uniformly from
    `num_data` samples. With noise mass m = K / num_data the positive is classified "data" with
    P = s / (s + m) and each negative "noise" with P = m / (s + m); the loss is the negative
    log-likelihood summed over pairs and averaged over the batch."""
    noise = (scores.shape[1] - 1) / num_data
    log_pos = torch.log(scores[:, 0] / (scores[:, 0] + noise + eps))
    log_neg = torch.log(noise / (scores[:, 1:] + noise + eps))
    return -(log_pos.sum() + log_neg.sum()) / scores.shape[0]


def memory_update(rows, values, momentum):
    """CRD memory bank rule: new row = L2-normalise(momentum * old row + (1 - momentum) * value)."""
    return F.normalize(rows * momentum + values * (1 - momentum), dim=1)
