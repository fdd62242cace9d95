"""Logit standardization (EXPERIMENT.LOGIT_STAND): the transform, where each logit distiller
applies it (KD, DKD, MLKD's kd terms only, SLD and the swapped variants, stacks), and the LS
repository's --logit-stand / --base-temp / --kd-weight mapping."""
import math

import pytest
import torch

from mdistiller.config import load_cfg
from mdistiller.distillers import build_distiller
from mdistiller.distillers.logit_stand import apply_logit_stand_flags
from mdistiller.distillers.losses import kd_loss, standardize_logits, swap_logits
from mdistiller.errors import ConfigError
from helpers.logits import TinyNet, cfg_with, make, outs, random_logits

D = 1 / math.sqrt(2)  # a two-class row standardizes to [-D, D]: unbiased std of [a, b] is |a - b| / sqrt(2)


def rows(*values):
    return torch.tensor(values, dtype=torch.float64)


# ---------------------------------------------------------------- the transform
def test_standardize_hand_values_use_the_unbiased_std():
    z = rows([1.0, 2.0, 3.0, 6.0], [5.0, 5.0, 7.0, 7.0])
    # row 0: mean 3, squares 4 + 1 + 0 + 9 = 14 over C - 1 = 3; row 1: mean 6, 4 / 3
    want = rows([-2.0, -1.0, 0.0, 3.0], [-1.0, -1.0, 1.0, 1.0]) / rows([math.sqrt(14 / 3)], [math.sqrt(4 / 3)])
    torch.testing.assert_close(standardize_logits(z), want, rtol=1e-6, atol=0)
    # positive scale and shift per row do not matter; a constant row stays finite (the 1e-7)
    torch.testing.assert_close(standardize_logits(3 * z + 7), standardize_logits(z), rtol=1e-6, atol=1e-7)
    assert torch.equal(standardize_logits(rows([2.0, 2.0, 2.0])), rows([0.0, 0.0, 0.0]))


def test_standardize_gradient_float64():
    z = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(standardize_logits, (z,))
    s = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: kd_loss(standardize_logits(a), standardize_logits(b), 2.0), (s, z))


@pytest.mark.parametrize("mode", ["max", "rotate"])
def test_swap_and_standardize_commute(mode):
    z = torch.randn(2, 16, 10, dtype=torch.float64)
    target = torch.randint(0, 10, (16,))
    torch.testing.assert_close(standardize_logits(swap_logits(z, target, mode)),
                               swap_logits(standardize_logits(z), target, mode), rtol=0, atol=1e-12)


# ---------------------------------------------------------------- KD and DKD
def test_kd_with_ls_hand_value_ignores_logit_scale():
    kd = make("KD", EXPERIMENT__LOGIT_STAND=True, KD__TEMPERATURE=2.0, KD__LOSS__KD_WEIGHT=9.0)
    # teacher [0, 3] -> [-D, D]; student [1, 0] -> [D, -D]; at T the KL of the two binary softmaxes
    # is tanh(a) * 2a with a = D / T
    a = D / 2.0
    _, losses = kd.distill(outs(rows([1.0, 0.0])), outs(rows([0.0, 3.0])), torch.tensor([1]))
    assert losses["loss_kd"].item() == pytest.approx(9.0 * math.tanh(a) * 2 * a * 4.0, rel=1e-6)
    assert losses["loss_ce"].item() == pytest.approx(0.1 * math.log(1 + math.e), rel=1e-12)  # CE on raw logits
    # a student with the teacher's ordering but another scale matches it exactly under LS, not without
    same = kd.distill(outs(rows([0.0, 1.0])), outs(rows([0.0, 5.0])), torch.tensor([1]))[1]["loss_kd"]
    raw = make("KD", KD__TEMPERATURE=2.0).distill(outs(rows([0.0, 1.0])), outs(rows([0.0, 5.0])), torch.tensor([1]))
    assert same.item() == pytest.approx(0.0, abs=1e-12) and raw[1]["loss_kd"].item() > 0.1


def test_dkd_with_ls_hand_value_and_warmup():
    # teacher [0, 5, 10] -> [-1, 0, 1]; student [2, 1, 0] -> [1, 0, -1] (mean 0, unbiased std 1)
    s, t, target = rows([2.0, 1.0, 0.0]), rows([0.0, 5.0, 10.0]), torch.tensor([2])
    dkd = make("DKD", EXPERIMENT__LOGIT_STAND=True, DKD__T=1.0, DKD__ALPHA=2.0, DKD__BETA=3.0, DKD__WARMUP=20)
    z = math.e + 1 + 1 / math.e  # both softmax normalisers at T = 1
    p, q = math.e / z, (1 / math.e) / z  # target probability: teacher, student
    tckd = p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
    nckd = math.tanh(0.5) * 1.0  # non-target logits: teacher [-1, 0], student [1, 0]
    for epoch, ramp in ((5, 0.25), (40, 1.0)):
        loss = dkd.distill(outs(s), outs(t), target, epoch=epoch)[1]["loss_kd"]
        assert loss.item() == pytest.approx(ramp * (2.0 * tckd + 3.0 * nckd), rel=1e-6)


# ---------------------------------------------------------------- MLKD: kd terms only
def test_mlkd_with_ls_standardizes_kd_terms_and_keeps_correlation_terms_raw():
    s_w, s_s, t_w, t_s, target = random_logits(seed=21)
    # the student is the teacher up to a positive scale and shift per row: identical once standardized
    student = outs(2.5 * t_w + 1.0, 0.5 * t_s - 3.0)
    on = make("MLKD", EXPERIMENT__LOGIT_STAND=True).distill(student, outs(t_w, t_s), target)[1]
    off = make("MLKD").distill(student, outs(t_w, t_s), target)[1]
    assert on["loss_kd"].item() == pytest.approx(0.0, abs=1e-10) and off["loss_kd"].item() > 0.1
    for key in ("loss_ce", "loss_cc", "loss_bc"):  # raw logits, masks from the raw teacher
        assert off[key].item() > 0
        torch.testing.assert_close(on[key], off[key], rtol=0, atol=0)


# ---------------------------------------------------------------- SLD, swapped variants, stacks
def test_sld_with_ls_hand_value():
    # teacher [0, 5, 10] with target 1 is wrong: swapped [0, 10, 5] -> standardized [-1, 1, 0];
    # a student [-5, 1, -2] standardizes to the same row, so L_TS is 0 at every temperature
    sld = make("SLD", EXPERIMENT__LOGIT_STAND=True, SLD__STUDENT_SWAP=False)
    s, t, target = rows([-5.0, 1.0, -2.0]), rows([0.0, 5.0, 10.0]), torch.tensor([1])
    assert sld.distill(outs(s), outs(t), target)[1]["loss_ts"].item() == pytest.approx(0.0, abs=1e-10)
    assert make("SLD", SLD__STUDENT_SWAP=False).distill(outs(s), outs(t), target)[1]["loss_ts"].item() > 0.1


@pytest.mark.parametrize("mode", ["max", "rotate"])
@pytest.mark.parametrize("name", ["SLD", "KD_SWAP", "DKD_SWAP", "MLKD_SWAP"])
def test_ls_variants_equal_the_plain_method_on_standardized_logits(name, mode):
    """Standardizing first, then the method without LS, gives the same losses and gradients; the
    swap statistics still describe the raw logits."""
    s_w, s_s, t_w, t_s, target = random_logits(seed=23)
    two = name in ("SLD", "MLKD_SWAP")
    student, teacher = (outs(s_w, s_s), outs(t_w, t_s)) if two else (outs(s_w), outs(t_w))
    on = make(name, EXPERIMENT__LOGIT_STAND=True, SLD__SWAP_MODE=mode, SLD__GAMMA=0)
    plain = make(name, SLD__SWAP_MODE=mode, SLD__GAMMA=0)
    got = on.distill(student, teacher, target, epoch=30)[1]
    standardized = [[(standardize_logits(z), f) for z, f in side] for side in (student, teacher)]
    want = plain.distill(*standardized, target, epoch=30)[1]
    if name == "MLKD_SWAP":  # the correlation terms stay raw
        want.update({k: v for k, v in plain.distill(student, teacher, target, epoch=30)[1].items() if k != "loss_kd"})
    for key in want:
        if key != "loss_ce":
            torch.testing.assert_close(got[key], want[key], rtol=1e-10, atol=1e-12)
    grads = [torch.autograd.grad(sum(v for k, v in losses.items() if k != "loss_ce"), s_w)[0] for losses in (got, want)]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-8, atol=1e-10)
    plain.distill(student, teacher, target, epoch=30)
    assert set(on.last_stats) == set(plain.last_stats)
    for key in on.last_stats:
        torch.testing.assert_close(on.last_stats[key], plain.last_stats[key])


def test_every_logit_term_of_a_stack_is_standardized():
    cfg = load_cfg(None, ["DISTILLER.TYPE", "SLD", "DISTILLER.STACK", "[DKD, KD]", "EXPERIMENT.LOGIT_STAND", "True"])
    stack = build_distiller(cfg, TinyNet(seed=1), TinyNet(seed=2)).train()
    x_w, x_s, y = torch.randn(6, 3, 2, 2), torch.randn(6, 3, 2, 2), torch.tensor([0, 1, 2, 3, 4, 0])
    _, losses = stack(image_weak=x_w, image_strong=x_s, target=y, epoch=200)
    student_outs = [stack.student(x_w), stack.student(x_s)]
    with torch.no_grad():
        teacher_outs = [stack.teacher(x_w), stack.teacher(x_s)]
    for name in ("SLD", "DKD", "KD"):
        alone = load_cfg(None, ["DISTILLER.TYPE", name, "EXPERIMENT.LOGIT_STAND", "True"])
        part = build_distiller(alone, stack.student, stack.teacher)
        _, want = part.distill(student_outs, teacher_outs, y, epoch=200)
        for term, value in want.items():
            if term != "loss_ce" or name == "SLD":
                torch.testing.assert_close(losses[f"{name}.{term}"], value, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- the LS repository's flags
@pytest.mark.parametrize("name", ["KD", "MLKD", "KD_ours", "KD_SWAP"])
def test_flags_set_kd_temperature_and_weight(name):
    cfg = apply_logit_stand_flags(load_cfg(None, ["DISTILLER.TYPE", name], freeze=False), 3, 6)
    assert cfg.EXPERIMENT.LOGIT_STAND is True
    assert (cfg.KD.TEMPERATURE, cfg.KD.LOSS.KD_WEIGHT, cfg.KD.LOSS.CE_WEIGHT) == (3.0, 6.0, 0.1)


def test_flags_scale_dkd_alpha_and_beta():
    cfg = load_cfg(None, ["DISTILLER.TYPE", "DKD", "DKD.BETA", "2.0"], freeze=False)
    apply_logit_stand_flags(cfg, 2, 9)
    assert (cfg.DKD.T, cfg.DKD.ALPHA, cfg.DKD.BETA, cfg.KD.TEMPERATURE) == (2.0, 9.0, 18.0, 4.0)


def test_flags_refuse_what_they_cannot_map():
    with pytest.raises(ConfigError, match=r"^--logit-stand sets .* not of DISTILLER.TYPE SLD; set "
                                          r"EXPERIMENT.LOGIT_STAND True"):
        apply_logit_stand_flags(load_cfg(None, ["DISTILLER.TYPE", "SLD"], freeze=False), 2, 9)
    with pytest.raises(ConfigError, match=r"^--base-temp is 0; it must be a positive number"):
        apply_logit_stand_flags(load_cfg(None, ["DISTILLER.TYPE", "KD"], freeze=False), 0, 9)


def test_logit_stand_is_off_by_default():
    assert cfg_with().EXPERIMENT.LOGIT_STAND is False
    s_w, _, t_w, _, target = random_logits(seed=3)
    torch.testing.assert_close(make("KD").distill(outs(s_w), outs(t_w), target)[1]["loss_kd"],
                               0.9 * kd_loss(s_w, t_w, 4.0))
