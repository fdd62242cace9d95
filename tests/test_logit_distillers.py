"""Logit distillers: mdistiller interface, official SLD formula, scheduling, views, config checks."""
import math

import pytest
import torch
import torch.nn.functional as F

from mdistiller.config import load_cfg
from mdistiller.distillers import (build_distiller, check_distiller_cfg, distiller_dict,
                                   teacher_required)
from mdistiller.distillers.losses import (batch_correlation_loss, class_correlation_loss,
                                          confidence_masks, kd_loss, swap_logits)
from mdistiller.errors import ConfigError
from helpers.logits import TinyNet, cfg_with, make, outs, random_logits

LOGIT_DISTILLERS = ["KD", "DKD", "MLKD", "KD_ours", "SLD", "KD_SWAP", "DKD_SWAP", "MLKD_SWAP", "DIST"]


# ---------------------------------------------------------------- registry and builder
def test_registry_holds_the_logit_distillers_and_aliases():
    for name in ["NONE"] + LOGIT_DISTILLERS:
        assert name in distiller_dict
    assert distiller_dict["KD_ours"] is distiller_dict["MLKD"]


def test_builder_uses_mdistiller_signatures():
    student, teacher = TinyNet(), TinyNet()
    none = build_distiller(cfg_with(DISTILLER__TYPE="NONE"), student, teacher)
    assert none.teacher is None and not teacher_required(cfg_with(DISTILLER__TYPE="NONE"))
    sld = build_distiller(cfg_with(DISTILLER__TYPE="SLD"), student, teacher)
    assert sld.teacher is teacher and teacher_required(cfg_with(DISTILLER__TYPE="SLD"))


def test_vanilla_is_plain_cross_entropy():
    model = TinyNet()
    distiller = distiller_dict["NONE"](model)
    x, y = torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 3])
    logits, losses = distiller.forward_train(image=x, target=y, epoch=1)
    assert set(losses) == {"loss_ce"}
    torch.testing.assert_close(losses["loss_ce"], F.cross_entropy(logits, y))
    assert distiller.get_extra_parameters() == 0


# ---------------------------------------------------------------- SLD vs the official formula
def official_sld(s_views, t_views, target, epoch, temps=(1, 2, 3, 4, 5, 6), gamma=150,
                 ce_w=0.1, kd_w=0.9, detach=False):
    """SLD.md's formula written plainly: row-by-row swap, one KL per view and temperature."""
    def swap(z):
        rows = []
        for b, row in enumerate(z.tolist()):
            n, t = row.index(max(row)), int(target[b])
            order = list(range(len(row)))
            order[n], order[t] = order[t], order[n]
            rows.append(z[b, order])
        return torch.stack(rows)

    def kl(s, teacher_logits, T):
        p = F.softmax(teacher_logits / T, dim=1)
        return F.kl_div(F.log_softmax(s / T, dim=1), p, reduction="none").sum(1).mean() * T ** 2

    total = ce_w * sum(F.cross_entropy(s, target) for s in s_views)
    for s, t in zip(s_views, t_views):
        swapped_t, swapped_s = swap(t), swap(s)
        if detach:
            swapped_s = swapped_s.detach()
        for T in temps:
            total = total + kd_w * kl(s, swapped_t, T)
            if epoch > gamma:
                total = total + kd_w * kl(s, swapped_s, T)
    return total


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("epoch", [150, 151])
@pytest.mark.parametrize("views", [1, 2])
def test_sld_total_loss_and_gradient_equal_the_official_formula(dtype, epoch, views):
    s_w, s_s, t_w, t_s, target = random_logits(dtype=dtype, seed=epoch)
    s_views, t_views = [s_w, s_s][:views], [t_w, t_s][:views]
    logits, losses = make("SLD").distill(outs(*s_views), outs(*t_views), target, epoch=epoch)
    assert logits is s_w
    ours = sum(losses.values())
    ours_grads = torch.autograd.grad(ours, s_views)
    reference = official_sld(s_views, t_views, target, epoch)
    ref_grads = torch.autograd.grad(reference, s_views)
    assert ours.dtype == dtype
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=0)
    for mine, ref in zip(ours_grads, ref_grads):
        torch.testing.assert_close(mine, ref, rtol=1e-6, atol=1e-6)


def test_sld_detached_pseudo_teacher_matches_the_formula():
    s_w, s_s, t_w, t_s, target = random_logits(seed=7)
    _, losses = make("SLD", SLD__DETACH_PSEUDO_TEACHER=True).distill(
        outs(s_w, s_s), outs(t_w, t_s), target, epoch=200)
    ours = torch.autograd.grad(sum(losses.values()), [s_w, s_s])
    ref = torch.autograd.grad(official_sld([s_w, s_s], [t_w, t_s], target, 200, detach=True), [s_w, s_s])
    for mine, want in zip(ours, ref):
        torch.testing.assert_close(mine, want, rtol=1e-9, atol=1e-12)


def test_sld_defaults_are_the_official_ones():
    sld = make("SLD")
    assert sld.temperatures == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    assert sld.gamma == 150 and sld.teacher_swap and sld.student_swap and not sld.detach_pseudo_teacher
    assert (sld.ce_loss_weight, sld.kd_loss_weight) == (0.1, 0.9)
    assert sld.views == (1, 2)


def test_sld_student_term_switches_on_exactly_after_gamma():
    s_w, s_s, t_w, t_s, target = random_logits(seed=3)
    sld = make("SLD", SLD__GAMMA=3)
    grads, ss = {}, {}
    for epoch in (1, 2, 3, 4, 5):
        _, losses = sld.distill(outs(s_w, s_s), outs(t_w, t_s), target, epoch=epoch)
        ss[epoch] = losses["loss_ss"].item()
        grads[epoch] = torch.autograd.grad(sum(losses.values()), s_w)[0]
    assert ss[1] == ss[2] == ss[3] == 0.0
    assert ss[4] > 0 and ss[4] == ss[5]
    assert torch.equal(grads[1], grads[3]) and not torch.allclose(grads[3], grads[4])


def test_pseudo_teacher_gradient_hand_values_detached_and_not():
    # One 2-class row, target 0, student [0, d]: swap gives [d, 0]; q = softmax([0, d]).
    # L_SS(T=1) = KL(swap || q) = (q1 - q0) * d = tanh(d/2) * d. Through both arguments:
    # dL/dd = tanh(d/2) + d * (1 - tanh(d/2)^2) / 2; with the pseudo-teacher detached only the
    # student side moves: dL/dd = q1 - q0 = tanh(d/2).
    d = 1.0
    th = math.tanh(d / 2)
    for detach, slope in ((False, th + d * (1 - th * th) / 2), (True, th)):
        sld = make("SLD", SLD__TEMPERATURES=[1.0], SLD__GAMMA=1, SLD__DETACH_PSEUDO_TEACHER=detach,
                   KD__LOSS__CE_WEIGHT=0.0, KD__LOSS__KD_WEIGHT=1.0)
        s = torch.tensor([[0.0, d]], dtype=torch.float64, requires_grad=True)
        t, y = torch.tensor([[0.0, 0.0]], dtype=torch.float64), torch.tensor([0])
        # the difference between epoch 2 (L_SS on) and epoch 1 (off) is L_SS alone
        on = sld.distill(outs(s), outs(t), y, epoch=2)[1]
        assert on["loss_ss"].item() == pytest.approx(th * d, rel=1e-12)
        g_on = torch.autograd.grad(sum(on.values()), s)[0]
        g_off = torch.autograd.grad(sum(sld.distill(outs(s), outs(t), y, epoch=1)[1].values()), s)[0]
        torch.testing.assert_close(g_on - g_off, torch.tensor([[-slope, slope]], dtype=torch.float64),
                                   rtol=1e-12, atol=1e-14)


def test_sld_ablation_switches():
    s_w, s_s, t_w, t_s, target = random_logits(seed=5)
    temps = [1, 2, 3, 4, 5, 6]
    ts_only = make("SLD", SLD__STUDENT_SWAP=False).distill(outs(s_w, s_s), outs(t_w, t_s), target, epoch=200)[1]
    assert set(ts_only) == {"loss_ce", "loss_ts"}
    full = make("SLD").distill(outs(s_w, s_s), outs(t_w, t_s), target, epoch=200)[1]
    torch.testing.assert_close(ts_only["loss_ts"], full["loss_ts"])
    unscheduled = make("SLD", SLD__GAMMA=0).distill(outs(s_w, s_s), outs(t_w, t_s), target, epoch=1)[1]
    torch.testing.assert_close(unscheduled["loss_ss"], full["loss_ss"])
    raw = make("SLD", SLD__TEACHER_SWAP=False).distill(outs(s_w, s_s), outs(t_w, t_s), target, epoch=1)[1]
    plain_kd = 0.9 * (kd_loss(s_w, t_w, temps).sum() + kd_loss(s_s, t_s, temps).sum())
    torch.testing.assert_close(raw["loss_ts"], plain_kd)


# ---------------------------------------------------------------- KD, DKD, swap variants
def test_kd_hand_value_and_weak_view_only():
    kd = make("KD", KD__TEMPERATURE=1.0)
    s = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    t = torch.tensor([[math.log(3.0), 0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)  # p_t = [3, 1, 1, 1, 1] / 7
    _, losses = kd.distill(outs(s), outs(t), torch.tensor([0]))
    kl = 3 / 7 * math.log(3 / 7 * 5) + 4 * (1 / 7) * math.log(1 / 7 * 5)
    assert losses["loss_kd"].item() == pytest.approx(0.9 * kl, rel=1e-12)
    assert losses["loss_ce"].item() == pytest.approx(0.1 * math.log(5.0), rel=1e-12)
    # a two-view batch: only the weak view reaches the models and the loss
    x_w, x_s, y = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 3])
    kd.eval()
    one = kd.forward_train(image=x_w, target=y, epoch=1)[1]
    two = kd.forward_train(image_weak=x_w, image_strong=x_s, target=y, epoch=1)[1]
    assert kd.student.calls == [4, 4] and kd.teacher.calls == [4, 4]
    for key in one:
        torch.testing.assert_close(one[key], two[key])


def test_dkd_warmup_and_weights():
    s_w, _, t_w, _, target = random_logits(seed=9)
    dkd = make("DKD", DKD__ALPHA=0.5, DKD__BETA=2.0, DKD__WARMUP=20)
    at = {e: dkd.distill(outs(s_w), outs(t_w), target, epoch=e)[1] for e in (5, 20, 100)}
    from mdistiller.distillers.losses import dkd_terms
    tckd, nckd = dkd_terms(s_w, t_w, target, 4.0)
    torch.testing.assert_close(at[20]["loss_kd"], 0.5 * tckd + 2.0 * nckd)
    torch.testing.assert_close(at[5]["loss_kd"], 0.25 * at[20]["loss_kd"])
    torch.testing.assert_close(at[100]["loss_kd"], at[20]["loss_kd"])
    torch.testing.assert_close(at[5]["loss_ce"], F.cross_entropy(s_w, target))


@pytest.mark.parametrize("name", ["KD", "DKD", "MLKD"])
def test_swapped_variants_equal_the_parent_on_swapped_teacher_logits(name):
    s_w, s_s, t_w, t_s, target = random_logits(seed=11)
    student, teacher = (outs(s_w, s_s), outs(t_w, t_s)) if name == "MLKD" else (outs(s_w), outs(t_w))
    swapped = [(swap_logits(z, target), f) for z, f in teacher]
    variant = make(f"{name}_SWAP").distill(student, teacher, target, epoch=30)[1]
    parent = make(name).distill(student, swapped, target, epoch=30)[1]
    assert set(variant) == set(parent)
    for key in parent:
        torch.testing.assert_close(variant[key], parent[key])


# ---------------------------------------------------------------- MLKD
def mlkd_terms_by_formula(s_w, s_s, t_w, t_s, faithful, T0=4.0):
    """SLD.md's description of MLKD, term by term, from per-sample KD values."""
    Ts = [T0, 3.0, 5.0, 2.0, 6.0]
    mask, cmask = confidence_masks(t_w)
    m, cm = mask.double(), cmask.double()
    kd_w_rows = [kd_loss(s_w, t_w, T, reduction="none") for T in Ts]  # (B,) each
    if faithful:
        kd = sum(r.mean() * m.mean() for r in kd_w_rows)
        kd = kd + sum(kd_loss(s_s, t_s, T) for T in Ts[:3]) + sum(kd_loss(s_w, t_w, T) for T in Ts[3:])
        cc = sum(class_correlation_loss(s_w, t_w, T) * cm.mean() for T in Ts)
        bc = sum(batch_correlation_loss(s_w, t_w, T) * m.mean() for T in Ts)
    else:
        kd = sum((r * m).mean() for r in kd_w_rows) + sum(kd_loss(s_s, t_s, T) for T in Ts)
        cc = sum(class_correlation_loss(s_w, t_w, T, class_weights=cm) + class_correlation_loss(s_s, t_s, T)
                 for T in Ts)
        bc = sum(batch_correlation_loss(s_w, t_w, T, sample_weights=m)
                 + batch_correlation_loss(s_s, t_s, T, sample_weights=m) for T in Ts)
    return {"loss_kd": 0.9 * kd, "loss_cc": 0.9 * cc, "loss_bc": 0.9 * bc}


@pytest.mark.parametrize("faithful", [True, False])
def test_mlkd_terms_follow_the_documented_formula(faithful):
    s_w, s_s, t_w, t_s, target = random_logits(seed=13)
    _, losses = make("MLKD", MLKD__FAITHFUL=faithful).distill(outs(s_w, s_s), outs(t_w, t_s), target)
    want = mlkd_terms_by_formula(s_w, s_s, t_w, t_s, faithful)
    torch.testing.assert_close(losses["loss_ce"], 0.1 * (F.cross_entropy(s_w, target) + F.cross_entropy(s_s, target)))
    for key, value in want.items():
        torch.testing.assert_close(losses[key], value, rtol=1e-12, atol=1e-14)


def test_mlkd_official_and_corrected_differ_exactly_where_documented():
    s_w, s_s, t_w, t_s, target = random_logits(seed=17)
    uniform = torch.zeros_like(t_w)  # equal confidences and class sums: both masks keep everything

    def both(s_w, s_s, t_w, t_s):
        return [make("MLKD", MLKD__FAITHFUL=f).distill(outs(s_w, s_s), outs(t_w, t_s), target)[1]
                for f in (True, False)]

    # 1) masks keep all, strong view == weak view: only quirk 3 (dropped strong cc/bc) remains
    off, fix = both(s_w, s_w, uniform, uniform)
    torch.testing.assert_close(off["loss_kd"], fix["loss_kd"])
    torch.testing.assert_close(fix["loss_cc"] - off["loss_cc"], 0.9 * class_correlation_loss(s_w, uniform, [4, 3, 5, 2, 6]).sum())
    torch.testing.assert_close(fix["loss_bc"] - off["loss_bc"], 0.9 * batch_correlation_loss(s_w, uniform, [4, 3, 5, 2, 6]).sum())
    # 2) masks keep all, views differ: quirk 2 (weak logits at T=2, 6 in the strong sum)
    off, fix = both(s_w, s_s, uniform, t_s)
    quirk2 = 0.9 * (kd_loss(s_s, t_s, [2, 6]) - kd_loss(s_w, uniform, [2, 6])).sum()
    torch.testing.assert_close(fix["loss_kd"] - off["loss_kd"], quirk2)
    # 3) real masks, strong == weak: quirk 1 (fraction of kept samples instead of per-sample mask)
    off, fix = both(s_w, s_w, t_w, t_w)
    mask = confidence_masks(t_w)[0].double()
    assert 0 < mask.mean() < 1
    per_sample = kd_loss(s_w, t_w, [4, 3, 5, 2, 6], reduction="none")  # (K, B)
    quirk1 = 0.9 * ((per_sample * mask).mean(1) - per_sample.mean(1) * mask.mean()).sum()
    strong_kd_gap = 0.9 * 0.0  # strong == weak: the strong sums agree
    torch.testing.assert_close(fix["loss_kd"] - off["loss_kd"], quirk1 + strong_kd_gap)


def test_mlkd_needs_two_views_and_uses_kd_temperature():
    mlkd = make("MLKD", KD__TEMPERATURE=1.0)
    assert mlkd.temperatures == (1.0, 3.0, 5.0, 2.0, 6.0)
    with pytest.raises(ValueError, match="view"):
        mlkd.forward_train(image=torch.randn(4, 3, 2, 2), target=torch.tensor([0, 1, 2, 3]), epoch=1)


# ---------------------------------------------------------------- the step
def test_one_teacher_forward_per_step_equals_separate_forwards():
    sld = make("SLD", SLD__GAMMA=0)
    sld.train()
    x_w, x_s, y = torch.randn(6, 3, 2, 2), torch.randn(6, 3, 2, 2), torch.tensor([0, 1, 2, 3, 4, 0])
    logits, losses = sld.forward_train(image_weak=x_w, image_strong=x_s, target=y, epoch=1)
    assert sld.teacher.calls == [12] and sld.student.calls == [6, 6]
    assert not sld.teacher.training and sld.student.training
    with torch.no_grad():
        separate = [sld.teacher(x_w), sld.teacher(x_s)]
    sld.student.calls.clear()
    student_outs = [sld.student(x_w), sld.student(x_s)]
    _, reference = sld.distill(student_outs, separate, y, epoch=1)
    for key in losses:
        torch.testing.assert_close(losses[key], reference[key], rtol=1e-6, atol=1e-7)
    sum(losses.values()).backward()
    assert all(p.grad is None for p in sld.teacher.parameters())
    assert all(p.grad is not None for p in sld.student.parameters())
    assert {id(p) for p in sld.get_learnable_parameters()} == {id(p) for p in sld.student.parameters()}
    assert sld.get_extra_parameters() == 0


@pytest.mark.parametrize("name", LOGIT_DISTILLERS)
def test_forward_test_returns_student_logits(name):
    distiller = make(name)
    distiller.eval()
    x = torch.randn(3, 3, 2, 2)
    torch.testing.assert_close(distiller.forward_test(x), distiller.student(x)[0])
    torch.testing.assert_close(distiller(image=x), distiller.student(x)[0])


# ---------------------------------------------------------------- config values
BAD_VALUES = [
    ("SLD", "SLD.TEMPERATURES", "[]", "at least one"),
    ("SLD", "SLD.TEMPERATURES", "[1, 0]", "positive"),
    ("SLD", "SLD.TEMPERATURES", "[1, -2.5]", "positive"),
    ("SLD", "SLD.GAMMA", "-1", "whole number"),
    ("SLD", "KD.LOSS.KD_WEIGHT", "-0.5", ">= 0"),
    ("SLD", "KD.LOSS.CE_WEIGHT", "-1", ">= 0"),
    ("KD", "KD.TEMPERATURE", "0", "positive"),
    ("KD", "KD.LOSS.CE_WEIGHT", "-0.1", ">= 0"),
    ("MLKD", "KD.TEMPERATURE", "-4", "positive"),
    ("DKD", "DKD.T", "0", "positive"),
    ("DKD", "DKD.WARMUP", "0", "positive"),
    ("DKD", "DKD.BETA", "-8", ">= 0"),
    ("DKD_SWAP", "DKD.ALPHA", "-1", ">= 0"),
]


@pytest.mark.parametrize("name,key,value,hint", BAD_VALUES)
def test_bad_config_values_fail_at_start_up_naming_the_key(name, key, value, hint):
    cfg = load_cfg(opts=["DISTILLER.TYPE", name, key, value])
    with pytest.raises(ConfigError) as err:
        check_distiller_cfg(cfg)
    message = str(err.value)
    assert key in message and hint in message and "\n" not in message
    with pytest.raises(ConfigError):
        build_distiller(cfg, TinyNet(), TinyNet())


@pytest.mark.parametrize("gamma", [150.0, 1.5, True, "150"])
def test_gamma_must_be_an_int(gamma):
    cfg = cfg_with(DISTILLER__TYPE="SLD", SLD__GAMMA=gamma)  # set in code, bypassing the loader
    with pytest.raises(ConfigError, match="SLD.GAMMA.*whole number"):
        check_distiller_cfg(cfg)
    if isinstance(gamma, float):  # from YAML or the command line the loader refuses it already
        with pytest.raises(ConfigError, match="SLD.GAMMA"):
            load_cfg(opts=["DISTILLER.TYPE", "SLD", "SLD.GAMMA", str(gamma)])


def test_non_numeric_temperature_and_switch_are_refused():
    with pytest.raises(ConfigError, match="SLD.TEMPERATURES.*'a'"):
        check_distiller_cfg(cfg_with(DISTILLER__TYPE="SLD", SLD__TEMPERATURES=[1.0, "a"]))
    with pytest.raises(ConfigError, match="SLD.DETACH_PSEUDO_TEACHER"):
        check_distiller_cfg(cfg_with(DISTILLER__TYPE="SLD", SLD__DETACH_PSEUDO_TEACHER=1))


# ---------------------------------------------------------------- real models, a few steps
@pytest.fixture(scope="module")
def real_models():
    from mdistiller.models import create_model
    torch.manual_seed(0)
    return create_model("resnet8x4", 100), create_model("resnet32x4", 100)


@pytest.mark.parametrize("name,epoch", [("NONE", 1), ("KD", 1), ("DKD", 20), ("MLKD", 1), ("SLD", 200),
                                        ("KD_SWAP", 1), ("DIST", 1)])
def test_trains_a_few_steps_with_real_models(real_models, name, epoch):
    import copy
    student, teacher = (copy.deepcopy(m) for m in real_models)
    cfg = cfg_with(DISTILLER__TYPE=name, DISTILLER__STUDENT="resnet8x4", DISTILLER__TEACHER="resnet32x4")
    distiller = build_distiller(cfg, student, teacher)
    distiller.train()
    optimizer = torch.optim.SGD(distiller.get_learnable_parameters(), lr=0.02, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    x_weak = torch.randn(4, 3, 32, 32, generator=g)
    batch = {"target": torch.tensor([3, 14, 15, 92]), "epoch": epoch}
    if 2 in distiller.views:
        batch.update(image_weak=x_weak, image_strong=x_weak + 0.3 * torch.randn(4, 3, 32, 32, generator=g))
    else:
        batch.update(image=x_weak)
    totals = []
    for _ in range(4):
        logits, losses = distiller(**batch)
        assert logits.shape == (4, 100) and all(torch.isfinite(v) for v in losses.values())
        total = sum(losses.values())
        totals.append(total.item())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert totals[-1] < totals[0], totals
    assert all(p.grad is None for p in teacher.parameters())
    assert distiller.teacher is None if name == "NONE" else not teacher.training


# ---------------------------------------------------------------- shipped configs
CONFIGS = __import__("pathlib").Path(__file__).resolve().parents[1] / "configs"
CIFAR_PAIRS = {"res56_res20", "res110_res32", "res32x4_res8x4", "vgg13_vgg8", "wrn40_2_wrn_16_2",
               "wrn40_2_wrn_40_1", "wrn40_2_vgg8", "wrn40_2_shuv1", "res32x4_shuv1", "res32x4_shuv2",
               "res50_mv2", "vgg13_mv2"}
METHODS = {"kd": "KD", "dkd": "DKD", "mlkd": "MLKD", "sld": "SLD"}


def test_every_pair_has_a_config_per_method():
    for folder in METHODS:
        cifar = {p.stem for p in (CONFIGS / "cifar100" / folder).glob("*.yaml")}
        assert CIFAR_PAIRS <= cifar
        assert {p.stem for p in (CONFIGS / "imagenet" / folder).glob("*.yaml")} == {"r34_r18", "r50_mv1", "r50_mv2"}


@pytest.mark.parametrize("path", sorted(str(p.relative_to(CONFIGS)) for folder in METHODS
                                        for p in CONFIGS.glob(f"*/{folder}/*.yaml")))
def test_config_loads_and_names_existing_models(path):
    from mdistiller.models import model_entry
    cfg = load_cfg(str(CONFIGS / path))
    assert cfg.DISTILLER.TYPE == METHODS[path.split("/")[1]]
    check_distiller_cfg(cfg)
    model_entry(cfg.DISTILLER.TEACHER, cfg.DATASET.TYPE, "DISTILLER.TEACHER")
    model_entry(cfg.DISTILLER.STUDENT, cfg.DATASET.TYPE)
    from mdistiller.distillers import input_views
    assert input_views(cfg) == (2 if cfg.DISTILLER.TYPE in ("SLD", "MLKD") else 1)  # SOLVER.TRAINER ours / base


def test_config_values_follow_the_papers_recipes():
    def cfg(path):
        return load_cfg(str(CONFIGS / path))

    sld_lr = {"res32x4_res8x4": 0.025, "wrn40_2_vgg8": 0.025, "wrn40_2_shuv1": 0.01,
              "res32x4_shuv1": 0.009, "res32x4_shuv2": 0.008, "res50_mv2": 0.008, "vgg13_mv2": 0.008}
    for pair, lr in sld_lr.items():
        c = cfg(f"cifar100/sld/{pair}.yaml")
        assert (c.SOLVER.LR, c.SOLVER.EPOCHS, c.SOLVER.BATCH_SIZE, c.SOLVER.WEIGHT_DECAY) == (lr, 240, 64, 5e-4)
        assert (c.KD.LOSS.CE_WEIGHT, c.KD.LOSS.KD_WEIGHT, c.SLD.GAMMA) == (0.1, 0.9, 150)
    for pair, beta in {"res56_res20": 2.0, "vgg13_mv2": 6.0, "wrn40_2_wrn_40_1": 6.0, "res32x4_res8x4": 8.0}.items():
        assert cfg(f"cifar100/dkd/{pair}.yaml").DKD.BETA == beta
    assert cfg("cifar100/dkd/res32x4_shuv2.yaml").SOLVER.LR == 0.01
    for pair, (ce, kd) in {"r34_r18": (0.5, 0.5), "r50_mv1": (1.0, 0.5), "r50_mv2": (1.0, 0.5)}.items():
        c = cfg(f"imagenet/sld/{pair}.yaml")
        assert (c.KD.LOSS.CE_WEIGHT, c.KD.LOSS.KD_WEIGHT) == (ce, kd)
        assert (c.SOLVER.BATCH_SIZE, c.SOLVER.EPOCHS, c.SOLVER.LR, list(c.SOLVER.LR_DECAY_STAGES),
                c.SOLVER.WEIGHT_DECAY) == (512, 100, 0.2, [30, 60, 90], 1e-4)
    assert cfg("cifar100/sld/res32x4_res8x4_ts_only.yaml").SLD.STUDENT_SWAP is False
    assert cfg("cifar100/sld/res32x4_res8x4_no_schedule.yaml").SLD.GAMMA == 0
    assert cfg("imagenet/mlkd/r34_r18.yaml").KD.TEMPERATURE == 1.0
