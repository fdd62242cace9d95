"""Pure loss functions against hand-computed values and their definitions written as loops."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mdistiller.distillers.losses import (batch_correlation_loss, class_correlation_loss,
                                          confidence_masks, dkd_terms, kd_loss, swap_logits)

LN2, LN3 = math.log(2.0), math.log(3.0)


def t64(x):
    return torch.tensor(x, dtype=torch.float64)


# ------------------------------------------------------------------------------------ swap
def test_swap_only_touches_wrong_rows():
    z = t64([[1.0, 3.0, 2.0],    # target 0, argmax 1: swap 0 <-> 1
             [5.0, 1.0, 0.0],    # target 0 already the argmax: unchanged
             [0.5, -1.0, 4.0]])  # target 1, argmax 2: swap 1 <-> 2
    out = swap_logits(z, torch.tensor([0, 0, 1]))
    assert torch.equal(out, t64([[3.0, 1.0, 2.0], [5.0, 1.0, 0.0], [0.5, 4.0, -1.0]]))
    assert torch.equal(z, t64([[1.0, 3.0, 2.0], [5.0, 1.0, 0.0], [0.5, -1.0, 4.0]]))  # input kept


def test_swap_ties_with_the_target_change_nothing():
    z = t64([[2.0, 2.0, 1.0], [2.0, 2.0, 1.0], [1.0, 1.0, 1.0]])
    out = swap_logits(z, torch.tensor([1, 0, 2]))  # target holds the maximum in every row
    assert torch.equal(out, z)


def test_swap_tie_between_non_targets_uses_the_first_maximal_index():
    # torch.argmax reports the first maximal index: column 0 moves to the target column 2.
    out = swap_logits(t64([[3.0, 3.0, 1.0]]), torch.tensor([2]))
    assert torch.equal(out, t64([[1.0, 3.0, 3.0]]))


def test_swap_broadcasts_target_over_leading_dims():
    z = t64([[[1.0, 2.0], [4.0, 3.0]], [[2.0, 1.0], [0.0, 9.0]]])  # (views=2, B=2, C=2)
    out = swap_logits(z, torch.tensor([0, 1]))
    assert torch.equal(out, t64([[[2.0, 1.0], [3.0, 4.0]], [[2.0, 1.0], [0.0, 9.0]]]))


def test_swap_gradient_follows_the_moved_values():
    z = t64([[1.0, 3.0, 2.0], [5.0, 1.0, 0.0]]).requires_grad_()
    w = t64([[10.0, 20.0, 30.0], [1.0, 2.0, 3.0]])
    (swap_logits(z, torch.tensor([0, 0])) * w).sum().backward()
    # out row 0 = [z1, z0, z2]: d/dz0 = w1, d/dz1 = w0; row 1 is the identity
    assert torch.equal(z.grad, t64([[20.0, 10.0, 30.0], [1.0, 2.0, 3.0]]))


# ------------------------------------------------------------------------------------ KD
def kl_by_hand(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def test_kd_loss_hand_values_at_two_temperatures():
    s, t = t64([[0.0, 0.0]]), t64([[LN3, 0.0]])  # teacher softmax at T=1: [3/4, 1/4]
    assert kd_loss(s, t, 1.0).item() == pytest.approx(kl_by_hand([0.75, 0.25], [0.5, 0.5]), rel=1e-12)
    r3 = math.sqrt(3.0)  # at T=2 the teacher is softmax([ln3 / 2, 0]) = [r3, 1] / (r3 + 1)
    at_2 = 4.0 * kl_by_hand([r3 / (r3 + 1), 1 / (r3 + 1)], [0.5, 0.5])
    assert kd_loss(s, t, 2.0).item() == pytest.approx(at_2, rel=1e-12)
    both = kd_loss(s, t, [1.0, 2.0])
    assert both.shape == (2,) and both[1].item() == pytest.approx(at_2, rel=1e-12)


def test_kd_loss_gradient_is_T_times_prob_gap_over_batch():
    torch.manual_seed(0)
    s, t = torch.randn(3, 5, dtype=torch.float64, requires_grad=True), torch.randn(3, 5, dtype=torch.float64)
    T = 3.0
    kd_loss(s, t, T).backward()
    expected = T * (F.softmax(s.detach() / T, 1) - F.softmax(t / T, 1)) / 3
    torch.testing.assert_close(s.grad, expected, rtol=1e-12, atol=1e-14)


def test_multi_temperature_kd_equals_the_per_temperature_loop():
    torch.manual_seed(1)
    s, t = torch.randn(2, 6, 10, dtype=torch.float64), torch.randn(2, 6, 10, dtype=torch.float64)
    temps = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    w = (torch.rand(6) > 0.5).double()

    def loop(T, **kw):
        return kd_loss(s, t, T, **kw)

    for kw in ({}, {"reduction": "none"}, {"sample_weights": w}):
        vectorised = kd_loss(s, t, temps, **kw)
        assert vectorised.shape == (6,) + loop(1.0, **kw).shape
        for k, T in enumerate(temps):
            torch.testing.assert_close(vectorised[k], loop(T, **kw), rtol=1e-12, atol=1e-14)
    # also against the plain definition, one row at a time
    for k, T in enumerate(temps):
        rows = [kl_by_hand(F.softmax(t[v, b] / T, 0).tolist(), F.softmax(s[v, b] / T, 0).tolist()) * T * T
                for v in range(2) for b in range(6)]
        expected = torch.tensor(rows, dtype=torch.float64).reshape(2, 6).mean(1)
        torch.testing.assert_close(kd_loss(s, t, temps)[k], expected, rtol=1e-10, atol=1e-12)


def test_kd_loss_keeps_dtype_and_upcasts_half_precision():
    s, t = torch.randn(4, 7), torch.randn(4, 7)
    assert kd_loss(s, t, [1, 2]).dtype == torch.float32
    assert kd_loss(s.double(), t.double(), 4.0).dtype == torch.float64
    low = kd_loss(s.bfloat16(), t.bfloat16(), 4.0)
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(kd_loss(s.bfloat16().float(), t.bfloat16().float(), 4.0).item(), rel=1e-6)


def test_kd_loss_is_zero_for_identical_logits_and_rejects_bad_reduction():
    z = torch.randn(3, 4, dtype=torch.float64)
    assert kd_loss(z, z, [1.0, 4.0]).abs().max().item() < 1e-14
    with pytest.raises(ValueError, match="reduction"):
        kd_loss(z, z, 1.0, reduction="sum")


# ------------------------------------------------------------------------------------ DKD
def test_dkd_hand_values():
    t = t64([[LN2, 0.0, 0.0]])  # teacher probs [1/2, 1/4, 1/4]: binary [1/2, 1/2], others [1/2, 1/2]
    s = t64([[0.0, LN2, 0.0]])  # student probs [1/4, 1/2, 1/4]: binary [1/4, 3/4], others [2/3, 1/3]
    tckd, nckd = dkd_terms(s, t, torch.tensor([0]), 1.0)
    assert tckd.item() == pytest.approx(kl_by_hand([0.5, 0.5], [0.25, 0.75]), rel=1e-12)
    assert nckd.item() == pytest.approx(kl_by_hand([0.5, 0.5], [2 / 3, 1 / 3]), rel=1e-12)


def dkd_by_definition(s, t, target, T):
    tckd, nckd = [], []
    for b in range(s.shape[0]):
        p, q = F.softmax(t[b] / T, 0), F.softmax(s[b] / T, 0)
        y = int(target[b])
        tckd.append(kl_by_hand([p[y].item(), 1 - p[y].item()], [q[y].item(), 1 - q[y].item()]))
        keep = [c for c in range(s.shape[1]) if c != y]
        nckd.append(kl_by_hand(F.softmax(t[b, keep] / T, 0).tolist(), F.softmax(s[b, keep] / T, 0).tolist()))
    return T * T * np.mean(tckd), T * T * np.mean(nckd)


def test_dkd_matches_its_definition_and_multi_temperature_loop():
    torch.manual_seed(2)
    s, t = torch.randn(5, 8, dtype=torch.float64) * 3, torch.randn(5, 8, dtype=torch.float64) * 3
    target = torch.tensor([0, 7, 3, 3, 1])
    for T in (1.0, 4.0):
        tckd, nckd = dkd_terms(s, t, target, T)
        want_t, want_n = dkd_by_definition(s, t, target, T)
        assert tckd.item() == pytest.approx(want_t, rel=1e-10)
        assert nckd.item() == pytest.approx(want_n, rel=1e-10)
    multi = dkd_terms(s, t, target, [1.0, 4.0])
    for k, T in enumerate((1.0, 4.0)):
        single = dkd_terms(s, t, target, T)
        torch.testing.assert_close(multi[0][k], single[0], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(multi[1][k], single[1], rtol=1e-12, atol=1e-14)


def test_dkd_is_finite_with_extreme_logits():
    # p_target of the student underflows to 0 in float32; log(softmax) would give -inf here.
    s = torch.tensor([[-200.0, 50.0, 0.0]], requires_grad=True)
    t = torch.tensor([[200.0, 0.0, -50.0]])
    tckd, nckd = dkd_terms(s, t, torch.tensor([0]), 1.0)
    (tckd + nckd).backward()
    assert torch.isfinite(tckd) and torch.isfinite(nckd) and torch.isfinite(s.grad).all()
    assert tckd.item() == pytest.approx(250.0, rel=1e-4)  # KL([1, 0] || [e^-250, 1]) = 250


# ------------------------------------------------------------------------------------ MLKD
def test_class_and_batch_correlation_hand_values():
    s, t = t64([[0.0, 0.0]]), t64([[LN3, 0.0]])  # p_s = [1/2, 1/2], p_t = [3/4, 1/4]
    # class Gram p^T p: teacher [[9, 3], [3, 1]] / 16, student all 1/4 -> gaps 5/16, -1/16, -1/16, -3/16
    cc = ((5 / 16) ** 2 + 2 * (1 / 16) ** 2 + (3 / 16) ** 2) / 2
    assert class_correlation_loss(s, t, 1.0).item() == pytest.approx(cc, rel=1e-12)
    # batch Gram p p^T (1 x 1): teacher 10/16, student 1/2
    assert batch_correlation_loss(s, t, 1.0).item() == pytest.approx((10 / 16 - 0.5) ** 2, rel=1e-12)
    # column weights: drop class 1 -> only the first column's gaps (5/16, -1/16) remain, still / C
    weighted = class_correlation_loss(s, t, 1.0, class_weights=t64([1.0, 0.0]))
    assert weighted.item() == pytest.approx(((5 / 16) ** 2 + (1 / 16) ** 2) / 2, rel=1e-12)


def correlation_by_loop(s, t, T, over_classes, weights=None):
    p_s, p_t = F.softmax(s / T, 1).tolist(), F.softmax(t / T, 1).tolist()
    B, C = s.shape
    n = C if over_classes else B
    total = 0.0
    for i in range(n):
        for j in range(n):
            if over_classes:
                gt = sum(p_t[b][i] * p_t[b][j] for b in range(B))
                gs = sum(p_s[b][i] * p_s[b][j] for b in range(B))
            else:
                gt = sum(p_t[i][c] * p_t[j][c] for c in range(C))
                gs = sum(p_s[i][c] * p_s[j][c] for c in range(C))
            total += (gt - gs) ** 2 * (1.0 if weights is None else weights[j])
    return total / n


def test_correlation_losses_match_loops_and_multi_temperature():
    torch.manual_seed(3)
    s, t = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    cw, sw = [1.0, 0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]
    temps = [4.0, 3.0, 5.0, 2.0, 6.0]
    cc_all = class_correlation_loss(s, t, temps, class_weights=t64(cw))
    bc_all = batch_correlation_loss(s, t, temps, sample_weights=t64(sw))
    for k, T in enumerate(temps):
        assert class_correlation_loss(s, t, T).item() == pytest.approx(correlation_by_loop(s, t, T, True), rel=1e-10)
        assert batch_correlation_loss(s, t, T).item() == pytest.approx(correlation_by_loop(s, t, T, False), rel=1e-10)
        assert cc_all[k].item() == pytest.approx(correlation_by_loop(s, t, T, True, cw), rel=1e-10)
        assert bc_all[k].item() == pytest.approx(correlation_by_loop(s, t, T, False, sw), rel=1e-10)


def test_confidence_masks_hand_values_and_numpy_median():
    # top probabilities increase with the row's leading logit; B = 4: the lower two rows are kept
    teacher = t64([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    sample_mask, class_mask = confidence_masks(teacher)
    assert sample_mask.tolist() == [True, True, False, False]
    # class sums: class 0 is largest, classes 1 and 2 tie at the median -> both kept
    assert class_mask.tolist() == [False, True, True]
    torch.manual_seed(4)
    for B in (5, 8):
        t = torch.randn(B, 6)
        p = F.softmax(t, 1).numpy()
        sample_mask, class_mask = confidence_masks(t)
        conf, mass = p.max(1), p.sum(0)
        assert sample_mask.tolist() == (conf <= np.percentile(conf, 50)).tolist()
        assert class_mask.tolist() == (mass <= np.percentile(mass, 50)).tolist()
