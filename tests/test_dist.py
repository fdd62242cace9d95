"""DIST (Huang et al. 2022): both relations on hand-made probabilities, gradients, the distiller
(CE + tau^2 (beta inter + gamma intra), weak view only) and its config."""
import statistics

import pytest
import torch
import torch.nn.functional as F

from mdistiller.distillers import check_distiller_cfg
from mdistiller.distillers.losses import dist_terms, standardize_logits
from mdistiller.errors import ConfigError
from helpers.logits import cfg_with, make, outs

# probabilities chosen by hand (B = 3 samples x C = 3 classes); logits = tau * log(p) give them back
P_T = [[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]
P_S = [[0.5, 0.3, 0.2], [0.5, 0.25, 0.25], [0.2, 0.2, 0.6]]


def logits(p, tau):
    return tau * torch.tensor(p, dtype=torch.float64).log()


def test_both_relations_hand_values():
    """Pearson correlations computed independently (statistics.correlation) row by row for the
    inter-class relation and column by column for the intra-class one."""
    tau = 4.0
    inter = 1 - sum(statistics.correlation(s, t) for s, t in zip(P_S, P_T)) / 3
    intra = 1 - sum(statistics.correlation(s, t) for s, t in zip(zip(*P_S), zip(*P_T))) / 3
    got_inter, got_intra = dist_terms(logits(P_S, tau), logits(P_T, tau), tau)
    assert got_inter.item() == pytest.approx(tau ** 2 * inter, rel=1e-5)
    assert got_intra.item() == pytest.approx(tau ** 2 * intra, rel=1e-5)
    # the first row by hand: centred teacher (-4, -1, 5)/30, student (5, -1, -4)/30 -> r = -39 / 42
    assert statistics.correlation(P_S[0], P_T[0]) == pytest.approx(-39 / 42, rel=1e-12)


def test_perfectly_correlated_pair_gives_zero_and_a_shift_does_not_matter():
    z = 3 * torch.randn(5, 7, dtype=torch.float64)
    inter, intra = dist_terms(z, z, 2.0)  # zero up to the authors' 1e-8 beside the norms
    assert inter.item() == pytest.approx(0.0, abs=1e-5) and intra.item() == pytest.approx(0.0, abs=1e-5)
    shifted = dist_terms(z + torch.randn(5, 1, dtype=torch.float64), z, 2.0)  # same softmax per row
    assert all(torch.allclose(a, b, rtol=0, atol=1e-12) for a, b in zip(shifted, (inter, intra)))
    anti = dist_terms(-z, z, 1.0)
    assert anti[0].item() > 1.0  # an anti-ordered student: correlations below zero


def test_leading_dims_broadcast_and_gradient_float64():
    s = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    t = torch.randn(4, 6, dtype=torch.float64)
    inter, intra = dist_terms(s, t, 3.0)
    assert inter.shape == intra.shape == (2,)
    torch.testing.assert_close(inter[1], dist_terms(s[1], t, 3.0)[0])
    assert torch.autograd.gradcheck(lambda a: sum(dist_terms(a, t, 3.0)), (s,))


def test_distiller_total_and_weak_view_only():
    tau = 4.0
    dist = make("DIST", DIST__BETA=2.0, DIST__GAMMA=0.5)
    s, t, y = logits(P_S, tau), logits(P_T, tau), torch.tensor([2, 0, 2])
    _, losses = dist.distill(outs(s), outs(t), y)
    inter, intra = dist_terms(s, t, tau)
    torch.testing.assert_close(losses["loss_kd"], 2.0 * inter + 0.5 * intra)
    torch.testing.assert_close(losses["loss_ce"], F.cross_entropy(s, y))
    assert dist.views == (1, 2)
    x_w, x_s = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    dist.forward_train(image_weak=x_w, image_strong=x_s, target=torch.tensor([0, 1, 2, 3]), epoch=1)
    assert dist.student.calls == [4] and dist.teacher.calls == [4]


def test_defaults_are_the_authors_cifar_setting_and_ls_applies():
    cfg = cfg_with()
    assert (cfg.DIST.CE_WEIGHT, cfg.DIST.BETA, cfg.DIST.GAMMA, cfg.DIST.TAU) == (1.0, 2.0, 2.0, 4.0)
    s, t, y = logits(P_S, 1.0), logits(P_T, 1.0), torch.tensor([2, 0, 2])
    on = make("DIST", EXPERIMENT__LOGIT_STAND=True).distill(outs(s), outs(t), y)[1]["loss_kd"]
    inter, intra = dist_terms(standardize_logits(s), standardize_logits(t), 4.0)
    torch.testing.assert_close(on, 2.0 * inter + 2.0 * intra)


@pytest.mark.parametrize("key, value, hint", [("DIST__TAU", 0.0, "positive"), ("DIST__BETA", -1.0, ">= 0"),
                                              ("DIST__CE_WEIGHT", -0.5, ">= 0")])
def test_bad_values_name_the_key(key, value, hint):
    with pytest.raises(ConfigError, match=f"{key.replace('__', '.')}.*{hint}"):
        check_distiller_cfg(cfg_with(DISTILLER__TYPE="DIST", **{key: value}))


def test_stacks_with_sld_and_standardizes_there_too():
    from mdistiller.config import load_cfg
    from mdistiller.distillers import build_distiller
    from helpers.logits import TinyNet
    cfg = load_cfg(None, ["DISTILLER.TYPE", "SLD", "DISTILLER.STACK", "[DIST]", "EXPERIMENT.LOGIT_STAND", "True"])
    stack = build_distiller(cfg, TinyNet(seed=1), TinyNet(seed=2)).train()
    x_w, x_s, y = torch.randn(6, 3, 2, 2), torch.randn(6, 3, 2, 2), torch.tensor([0, 1, 2, 3, 4, 0])
    _, losses = stack(image_weak=x_w, image_strong=x_s, target=y, epoch=1)
    assert set(losses) == {"SLD.loss_ce", "SLD.loss_ts", "SLD.loss_ss", "DIST.loss_kd"}
    with torch.no_grad():
        s, t = stack.student(x_w)[0], stack.teacher(x_w)[0]  # DIST sees the weak view only
        inter, intra = dist_terms(standardize_logits(s), standardize_logits(t), 4.0)
    torch.testing.assert_close(losses["DIST.loss_kd"].detach(), 2.0 * inter + 2.0 * intra, rtol=1e-5, atol=1e-6)
