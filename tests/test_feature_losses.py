"""Pure feature losses: hand-computed values on tiny tensors and the identities the papers state."""
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mdistiller.distillers import feature_losses as fl


def maps(*rows):
    """A (1, C, 1, W) feature map from C lists of W values (one sample)."""
    return torch.tensor([rows], dtype=torch.float64).unsqueeze(2)


def test_match_spatial_pools_the_larger_map():
    big, small = torch.arange(16.0).view(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)
    s, t = fl.match_spatial(big, small)
    assert s.shape == t.shape == (1, 1, 2, 2)
    assert s[0, 0, 0, 0] == (0 + 1 + 4 + 5) / 4
    t2, s2 = fl.match_spatial(small, big)
    assert t2.shape == s2.shape == (1, 1, 2, 2)


# ------------------------------------------------------------------ AT
def test_at_loss_hand_value():
    # one channel, maps [1, 0] and [0, 1]: normalised attentions [1, 0] vs [0, 1] -> mean sq diff 1
    assert fl.at_loss(maps([1.0, 0.0]), maps([0.0, 1.0])).item() == pytest.approx(1.0)
    # two channels: channel-mean of squares [(1 + 9) / 2, (4 + 0) / 2] = [5, 2] -> normalised
    att = fl.attention_map(maps([1.0, 2.0], [3.0, 0.0]))
    assert torch.allclose(att, torch.tensor([[5.0, 2.0]], dtype=torch.float64) / math.sqrt(29))


def test_at_loss_identities():
    f = torch.rand(3, 4, 5, 5)
    assert fl.at_loss(f, f).item() == 0.0
    # attention is normalised: scaling a feature map changes nothing
    assert fl.at_loss(7.0 * f, f).item() == pytest.approx(0.0, abs=1e-12)
    # different spatial sizes are pooled to the smaller one
    assert fl.at_loss(torch.rand(2, 4, 8, 8), torch.rand(2, 6, 4, 4)).ndim == 0


# ------------------------------------------------------------------ NST
def test_nst_loss_hand_value():
    # student channels [1,0], [0,1]; teacher channels [1,0], [1,0] (already unit norm)
    # k(t,t) = 1 everywhere -> 1; k(s,s) = identity -> 0.5; k(s,t) = [[1,1],[0,0]] -> 0.5
    s, t = maps([1.0, 0.0], [0.0, 1.0]), maps([1.0, 0.0], [1.0, 0.0])
    assert fl.nst_loss(s, t).item() == pytest.approx(1.0 + 0.5 - 2 * 0.5)


def test_nst_loss_zero_for_identical_and_channel_permuted_features():
    f = torch.rand(2, 5, 4, 4)
    assert fl.nst_loss(f, f).item() == pytest.approx(0.0, abs=1e-6)
    # MMD compares the *set* of neurons: their order does not matter
    assert fl.nst_loss(f[:, [3, 1, 4, 0, 2]], f).item() == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------ PKT
def test_pkt_loss_hand_value():
    # student rows orthogonal: kernel [[1, .5], [.5, 1]] -> rows [2/3, 1/3]
    # teacher rows parallel: kernel all ones -> rows [1/2, 1/2]
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    t = torch.tensor([[1.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    row = 0.5 * math.log(0.5 / (2 / 3)) + 0.5 * math.log(0.5 / (1 / 3))
    assert fl.pkt_loss(s, t).item() == pytest.approx(2 * row / 4, abs=1e-6)


def test_pkt_loss_zero_when_equal_and_scale_invariant():
    f = torch.randn(6, 10)
    assert fl.pkt_loss(f, f).item() == 0.0
    assert fl.pkt_loss(3.0 * f, f).item() == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------ SP
def test_sp_loss_hand_value():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # G = I
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)  # G = ones -> rows 1/sqrt(2)
    r = 1 / math.sqrt(2)
    expected = (2 * (1 - r) ** 2 + 2 * r ** 2) / 4
    assert fl.sp_loss(s, t).item() == pytest.approx(expected)


def test_sp_loss_flattens_maps_and_is_zero_for_equal_features():
    f = torch.rand(4, 3, 2, 2)
    assert fl.sp_loss(f, f).item() == 0.0
    assert fl.sp_loss(2.0 * f, f).item() == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------ RKD
def test_rkd_distance_loss_hand_value():
    # 1-D points: student 0, 1, 2 (distances 1, 2, 1; mean 4/3); teacher 0, 1, 3 (1, 3, 2; mean 2)
    s = torch.tensor([[0.0], [1.0], [2.0]], dtype=torch.float64)
    t = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
    # normalised: student [.75, 1.5, .75], teacher [.5, 1.5, 1]; |diff| .25 on 4 of 9 entries
    expected = 4 * 0.5 * 0.25 ** 2 / 9
    assert fl.rkd_distance_loss(s, t).item() == pytest.approx(expected, abs=1e-9)


def reference_angle_cosines(points):
    """cos of the angle at vertex i between j and k, for all (i, j, k); 0 where an edge is empty."""
    out = []
    for i, j, k in itertools.product(range(len(points)), repeat=3):
        a, b = points[j] - points[i], points[k] - points[i]
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        out.append(0.0 if na == 0 or nb == 0 else float(a @ b / (na * nb)))
    return np.array(out)


def test_rkd_angle_loss_matches_a_loop_over_triplets():
    s, t = np.random.default_rng(0).normal(size=(2, 4, 3))
    diff = reference_angle_cosines(s) - reference_angle_cosines(t)
    huber = np.where(np.abs(diff) < 1, 0.5 * diff ** 2, np.abs(diff) - 0.5).mean()
    got = fl.rkd_angle_loss(torch.tensor(s), torch.tensor(t)).item()
    assert got == pytest.approx(huber, abs=1e-9)


def test_rkd_is_invariant_to_feature_scale_and_rotation():
    """The paper: both potentials are invariant to the embedding's scale (distance is
    normalised by its mean, angles are scale-free) — and to rotations of the space."""
    s, t = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))
    for loss in (fl.rkd_distance_loss, fl.rkd_angle_loss):
        base = loss(s, t).item()
        assert base > 0
        assert loss(10.0 * s, t).item() == pytest.approx(base, rel=1e-9)
        assert loss(s @ rotation, t).item() == pytest.approx(base, rel=1e-9)
        assert loss(s, s * 0.1).item() == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------ VID
def test_vid_loss_hand_value_and_init():
    log_scale = torch.tensor([fl.vid_log_scale_init(2.0, eps=1e-5)])
    assert (F.softplus(log_scale) + 1e-5).item() == pytest.approx(2.0)
    pred, target = torch.ones(1, 1, 1, 1), torch.zeros(1, 1, 1, 1)
    # 0.5 * ((1 - 0)^2 / 2 + log 2)
    assert fl.vid_loss(pred, target, log_scale, eps=1e-5).item() == pytest.approx(0.5 * (0.5 + math.log(2.0)), rel=1e-5)


def test_vid_loss_variance_is_per_channel():
    pred, target = torch.zeros(1, 2, 1, 1), torch.tensor([1.0, 1.0]).view(1, 2, 1, 1)
    log_scale = torch.tensor([fl.vid_log_scale_init(1.0), fl.vid_log_scale_init(4.0)])
    expected = (0.5 * (1 / 1.0 + math.log(1.0)) + 0.5 * (1 / 4.0 + math.log(4.0))) / 2
    assert fl.vid_loss(pred, target, log_scale).item() == pytest.approx(expected, rel=1e-4)


# ------------------------------------------------------------------ OFD
def test_ofd_margin_is_the_negative_part_expectation():
    # N(0, 1): E[x | x < 0] = -phi(0) / Phi(0) = -sqrt(2 / pi)
    m = fl.ofd_margin(torch.tensor([1.0, -1.0]), torch.tensor([0.0, 0.0]))
    assert torch.allclose(m, torch.full((2,), -math.sqrt(2 / math.pi)))  # |weight| is the std
    # Monte-Carlo check for N(0.5, 2^2)
    x = torch.randn(2_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 + 0.5
    expected = x[x < 0].mean().item()
    assert fl.ofd_margin(torch.tensor([2.0]), torch.tensor([0.5])).item() == pytest.approx(expected, abs=5e-3)
    # almost no negative mass (Phi(-5) ~ 3e-7): the -3 sigma fallback
    assert fl.ofd_margin(torch.tensor([1.0]), torch.tensor([5.0])).item() == pytest.approx(-3.0)


def test_ofd_loss_partial_l2_cases():
    margin = torch.tensor([-1.0])
    # teacher -2 -> target max(-2, -1) = -1; teacher -0.5 -> -0.5; teacher 1 -> 1
    t = torch.tensor([-2.0, -2.0, -0.5, -0.5, 1.0, 1.0]).view(1, 1, 1, 6)
    s = torch.tensor([-0.5, -3.0, 0.0, -1.0, 0.0, 2.0]).view(1, 1, 1, 6)
    # above a non-positive target: squared error; below it: nothing; positive target: always
    expected = 0.5 ** 2 + 0 + 0.5 ** 2 + 0 + 1 + 1
    assert fl.ofd_loss(s, t, margin).item() == pytest.approx(expected)
    # summed over C, H, W and averaged over the batch
    assert fl.ofd_loss(s.repeat(4, 1, 1, 1), t.repeat(4, 1, 1, 1), margin).item() == pytest.approx(expected)


# ------------------------------------------------------------------ KDSVD
def test_align_singular_vectors_undoes_order_and_sign():
    basis, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    v_t = basis[:, :2].unsqueeze(0)  # (1, 6, 2)
    v_s = torch.stack([basis[:, 3], -basis[:, 1], basis[:, 0], basis[:, 5]], dim=1).unsqueeze(0)
    assert torch.allclose(fl.align_singular_vectors(v_s, v_t), v_t)


def test_top_singular_vectors_shapes_and_norms():
    v, s, _ = fl.top_singular_vectors(torch.randn(3, 4, 5, 5), k=2)
    assert v.shape == (3, 4, 2) and s.shape == (3, 2)
    assert torch.allclose(v.norm(dim=1), torch.ones(3, 2), atol=1e-5)
    assert torch.allclose(s.norm(dim=1), torch.ones(3), atol=1e-5)


def test_kdsvd_loss_identities():
    torch.manual_seed(0)
    feats = [torch.randn(2, 4, 6, 6), torch.randn(2, 8, 3, 3), torch.randn(2, 8, 3, 3)]
    assert fl.kdsvd_loss(feats, feats, k=1).item() == pytest.approx(0.0, abs=1e-6)
    # singular vectors have no sign: a negated student feature is the same knowledge
    assert fl.kdsvd_loss([-f for f in feats], feats, k=2).item() == pytest.approx(0.0, abs=1e-6)
    other = [torch.randn_like(f, requires_grad=True) for f in feats]
    loss = fl.kdsvd_loss(other, feats, k=1)
    assert loss.item() > 0
    loss.backward()
    assert all(torch.isfinite(f.grad).all() for f in other)


def test_kdsvd_loss_hand_value_for_two_stages():
    # rank-1 stages u v^T: top right singular vector = v (up to sign), normalised singular value 1
    v1, v2 = torch.tensor([1.0, 0.0]), torch.tensor([0.6, 0.8])
    w2 = torch.tensor([0.0, 1.0])  # the student's second stage points elsewhere

    def stage(v):  # (1, C=2, H=2, W=1): spatial rows [1, 2] times v
        return torch.outer(torch.tensor([1.0, 2.0]), v).t().reshape(1, 2, 2, 1)

    def rbf(a, b):
        return torch.exp(-(a[:, None] - b[None, :]) ** 2 / 8)

    # the teacher's vectors come out of the SVD with arbitrary signs s1, s2; the student's are
    # aligned to them, so its vectors are s1 * v1 and s2 * w2 (w2 . v2 > 0)
    s1, s2 = (torch.sign(fl.top_singular_vectors(stage(v), 1)[0][0, :, 0] @ v) for v in (v1, v2))
    expected = (rbf(s2 * w2, s1 * v1) - rbf(s2 * v2, s1 * v1)).pow(2).sum().item()
    got = fl.kdsvd_loss([stage(v1), stage(w2)], [stage(v1), stage(v2)], k=1).item()
    assert got == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------ ReviewKD
def test_hcl_loss_hand_value():
    checker = (torch.arange(4).view(4, 1) + torch.arange(4).view(1, 4)) % 2 * 2.0 - 1  # +-1 pattern
    f_s, f_t = checker.view(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
    # full-resolution MSE 1; pooled to 2x2 and 1x1 the pattern averages out (MSE 0); level 4 skipped
    assert fl.hcl_loss(f_s, f_t).item() == pytest.approx(1.0 / (1 + 0.5 + 0.25))
    # a constant offset survives pooling: every level has MSE 1 -> weighted mean 1
    assert fl.hcl_loss(torch.ones(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)).item() == pytest.approx(1.0)
    # a 1x1 map has no pyramid levels
    assert fl.hcl_loss(torch.full((2, 3, 1, 1), 2.0), torch.zeros(2, 3, 1, 1)).item() == pytest.approx(4.0)


# ------------------------------------------------------------------ CRD
def test_crd_nce_loss_hand_value():
    # K = 2 negatives out of N = 4 samples: noise mass m = 0.5
    scores = torch.tensor([[1.5, 0.5, 0.5]], dtype=torch.float64)
    expected = -(math.log(1.5 / 2.0) + 2 * math.log(0.5 / 1.0))
    assert fl.crd_nce_loss(scores, num_data=4).item() == pytest.approx(expected, rel=1e-6)
    # averaged over the batch
    assert fl.crd_nce_loss(scores.repeat(3, 1), num_data=4).item() == pytest.approx(expected, rel=1e-6)


def test_memory_update_rule():
    rows, values = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    out = fl.memory_update(rows, values, momentum=0.5)
    r = 1 / math.sqrt(2)
    assert torch.allclose(out, torch.tensor([[r, r], [0.0, 1.0]]))
    assert torch.allclose(fl.memory_update(rows, values, momentum=1.0), F.normalize(rows, dim=1))
