"""OFD, VID and KDSVD default to mdistiller's behaviour (OFD/VID/KDSVD.FAITHFUL True), and the
switch gives the corrected variants. Each expected value is computed here, in float64, from the
published formulas and mdistiller's code behaviour, on the same weights and batch as the
distiller: losses, gradients and the weights after one SGD step agree to 1e-6.

mdistiller's behaviour reproduced:
  * OFD: `train()` leaves the teacher in train mode: batch statistics, and its BatchNorm running
    statistics move every step. Margins are kept as float32 values (a FloatTensor).
  * VID: the log-scales live in a plain list: the variances stay at INIT_PRED_VAR, computed in
    float32 (the list's tensors are float32, cast to the features' type).
  * KDSVD: singular vectors of each (B, C, H, W) map viewed as (B, C*H, W): over the width axis.
"""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mdistiller.config import load_cfg
from mdistiller.distillers import distiller_dict
from mdistiller.distillers.feature_losses import kdsvd_loss
from mdistiller.models import create_model

LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 5e-4
CLOSE = dict(rtol=1e-6, atol=1e-9)


def build(method, *opts):
    """(distiller, untouched deep copy of it, batch): resnet8 -> resnet8 in float64. The teacher's
    BatchNorm layers get varied affine values and running statistics, as a trained teacher has,
    including a channel whose negative side has (almost) no mass (OFD's -3 sigma margin)."""
    torch.manual_seed(0)
    teacher, student = create_model("resnet8", 5), create_model("resnet8", 5)
    for m in teacher.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0.0, 0.5)
            m.running_mean.normal_(0.0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    teacher.get_bn_before_relu()[0].bias.data[0] = 6.0
    cfg = load_cfg(None, ["DISTILLER.TYPE", method, "DISTILLER.TEACHER", "resnet8", "DISTILLER.STUDENT", "resnet8",
                          "FITNET.INPUT_SIZE", "[16, 16]", "VID.INPUT_SIZE", "[16, 16]", *opts])
    distiller = distiller_dict[method](student, teacher, cfg).double()  # built as in training, then float64
    reference = copy.deepcopy(distiller)
    x = torch.randn(8, 3, 16, 16, dtype=torch.float64)
    y = torch.randint(0, 5, (8,))
    return distiller, reference, x, y


def check_step(distiller, reference, x, y, expected_fn):
    """Our forward/backward/SGD step against `expected_fn(reference, x, y)` -> (logits, losses,
    learnable parameters): losses, gradients and updated weights."""
    params = distiller.get_learnable_parameters()
    distiller.train()
    logits, losses = distiller(image=x, target=y, epoch=1)
    ref_logits, ref_losses, ref_params = expected_fn(reference, x, y)
    assert list(losses) == list(ref_losses)
    for name in losses:
        torch.testing.assert_close(losses[name], ref_losses[name], **CLOSE)
    torch.testing.assert_close(logits, ref_logits, **CLOSE)
    optimizer = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    optimizer.zero_grad()
    sum(losses.values()).backward()
    sum(ref_losses.values()).backward()
    assert len(params) == len(ref_params)
    before = [p.detach().clone() for p in params]
    optimizer.step()
    for p, ref, w in zip(params, ref_params, before):
        torch.testing.assert_close(p.grad, ref.grad, **CLOSE)
        # first SGD step: the momentum buffer is the (decayed) gradient itself
        torch.testing.assert_close(p.detach(), w - LR * (ref.grad + WEIGHT_DECAY * w), **CLOSE)
    return losses


def student_logits_and_feats(reference, x, teacher_train_mode=False):
    reference.student.train()
    reference.teacher.train(teacher_train_mode)
    logits, feats_s = reference.student(x)
    with torch.no_grad():
        _, feats_t = reference.teacher(x)
    return logits, feats_s, feats_t


# ------------------------------------------------------------------ OFD
def ofd_margins(bn):
    """E[x | x < 0] for x ~ N(bias, weight^2) per channel (-3 |weight| where P(x < 0) <= 0.001),
    stored as float32 as mdistiller's FloatTensor is."""
    margins = []
    for w, b in zip(bn.weight.tolist(), bn.bias.tolist()):
        s = abs(w)
        negative_mass = 0.5 * math.erfc(b / s / math.sqrt(2))  # Phi(-b / s)
        if negative_mass > 0.001:
            margins.append(b - s * math.exp(-(b / s) ** 2 / 2) / math.sqrt(2 * math.pi) / negative_mass)
        else:
            margins.append(-3 * s)
    return torch.tensor(margins, dtype=torch.float32).double().view(1, -1, 1, 1)


def ofd_expected(teacher_train_mode):
    def expected(reference, x, y):
        logits, feats_s, feats_t = student_logits_and_feats(reference, x, teacher_train_mode)
        bns = reference.teacher.get_bn_before_relu()
        s_list, t_list = feats_s["preact_feats"][1:], feats_t["preact_feats"][1:]
        n = min(len(s_list), len(t_list))
        total = 0.0
        for i in range(n):
            s = reference.connectors[i](s_list[len(s_list) - n + i])
            t = F.adaptive_avg_pool2d(t_list[len(t_list) - n + i], s.shape[-2:])
            m = ofd_margins(bns[i])
            partial_l2 = ((s - m) ** 2 * ((s > m) & (t <= m)) + (s - t) ** 2 * ((s > t) & (t > m) & (t <= 0))
                          + (s - t) ** 2 * (t > 0))
            total = total + partial_l2.abs().mean(dim=0).sum() / 2 ** (n - i - 1)
        losses = {"loss_ce": 1.0 * F.cross_entropy(logits, y), "loss_kd": 0.001 * total}
        params = list(reference.student.parameters()) + list(reference.connectors.parameters())
        return logits, losses, params
    return expected


@pytest.mark.parametrize("faithful", [True, False])
def test_ofd_matches_mdistiller_by_default_and_keeps_the_teacher_frozen_when_switched(faithful):
    distiller, reference, x, y = build("OFD", "OFD.FAITHFUL", str(faithful))
    three_sigma = [torch.isclose(ofd_margins(bn), -3 * bn.weight.abs().view(1, -1, 1, 1), rtol=1e-6)
                   for bn in reference.teacher.get_bn_before_relu()]
    assert any(t.any() for t in three_sigma) and not all(t.all() for t in three_sigma)  # both margin branches
    running = [m.running_mean.clone() for m in distiller.teacher.modules() if isinstance(m, nn.BatchNorm2d)]
    check_step(distiller, reference, x, y, ofd_expected(teacher_train_mode=faithful))
    assert distiller.teacher.training == faithful
    after = [m.running_mean for m in distiller.teacher.modules() if isinstance(m, nn.BatchNorm2d)]
    ref_after = [m.running_mean for m in reference.teacher.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.allclose(a, r, rtol=1e-6, atol=1e-12) for a, r in zip(after, ref_after))
    assert all(torch.equal(a, b) for a, b in zip(after, running)) != faithful  # stats drift only when faithful
    distiller.eval()
    assert not distiller.teacher.training


# ------------------------------------------------------------------ VID
def vid_expected(learned_variances):
    def expected(reference, x, y, init_var=5.0, eps=1e-5):
        logits, feats_s, feats_t = student_logits_and_feats(reference, x)
        total = 0.0
        for i, (f_s, f_t) in enumerate(zip(feats_s["feats"][1:], feats_t["feats"][1:])):
            if f_s.shape[2] > f_t.shape[2]:
                f_s = F.adaptive_avg_pool2d(f_s, f_t.shape[2:])
            elif f_s.shape[2] < f_t.shape[2]:
                f_t = F.adaptive_avg_pool2d(f_t, f_s.shape[2:])
            mean = reference.regressors[i](f_s)
            if learned_variances:
                log_scale = reference.log_scales[i]
            else:  # a float32 tensor in a plain list, as mdistiller builds it
                log_scale = torch.full((f_t.shape[1],), np.log(np.exp(init_var - eps) - 1.0), dtype=torch.float32)
            var = (torch.log(1.0 + torch.exp(log_scale)) + eps).view(1, -1, 1, 1).to(mean)
            total = total + (0.5 * ((mean - f_t) ** 2 / var + torch.log(var))).mean()
        losses = {"loss_ce": 1.0 * F.cross_entropy(logits, y), "loss_kd": 1.0 * total}
        params = list(reference.student.parameters()) + list(reference.regressors.parameters())
        params += list(reference.log_scales.parameters()) if learned_variances else []
        return logits, losses, params
    return expected


@pytest.mark.parametrize("faithful", [True, False])
def test_vid_matches_mdistiller_by_default_and_learns_variances_when_switched(faithful):
    distiller, reference, x, y = build("VID", "VID.FAITHFUL", str(faithful))
    check_step(distiller, reference, x, y, vid_expected(learned_variances=not faithful))
    regressor_params = sum(p.numel() for p in distiller.regressors.parameters())
    saved = set(distiller.state_dict())
    if faithful:  # never trained, saved or counted, as mdistiller's
        assert not any("log_scale" in k for k in saved)
        assert distiller.get_extra_parameters() == regressor_params
        assert all(torch.equal(s, distiller.stage_log_scales()[0][:1].expand_as(s)) for s in distiller.stage_log_scales())
    else:
        assert {"log_scales.0", "log_scales.1", "log_scales.2"} <= saved
        assert distiller.get_extra_parameters() == regressor_params + sum(p.numel() for p in distiller.log_scales)
        assert not torch.equal(distiller.log_scales[0], reference.log_scales[0])  # trained by the step


# ------------------------------------------------------------------ KDSVD
def singular_vectors(feat, n, width_axis):
    """(normalised top-n singular values, normalised top-n right singular vectors) of each sample's
    map as a (C*H) x W matrix (mdistiller) or an (H*W) x C matrix (the paper); NaN/inf -> 0."""
    b, c, h, w = feat.shape
    matrix = feat.reshape(b, c * h, w) if width_axis else feat.reshape(b, c, h * w).transpose(1, 2)
    _, values, vh = torch.linalg.svd(matrix, full_matrices=False)
    vectors = vh.transpose(1, 2)
    values, vectors = (torch.where(torch.isfinite(z), z, torch.zeros_like(z)) for z in (values, vectors))
    return F.normalize(values[:, :n], dim=1), F.normalize(vectors[:, :, :n], dim=1)


def kdsvd_expected(width_axis, k=1):
    def rbf(a, b):
        return torch.exp(-(a.unsqueeze(2) - b.unsqueeze(1)).pow(2) / 8)

    def expected(reference, x, y):
        logits, feats_s, feats_t = student_logits_and_feats(reference, x)
        terms, previous = [], None
        for f_s, f_t in zip(feats_s["feats"][1:], feats_t["feats"][1:]):
            s_t, v_t = singular_vectors(f_t, k, width_axis)
            _, v_s = singular_vectors(f_s, k + 3, width_axis)
            cosine = v_s.transpose(1, 2) @ v_t  # student vectors aligned to the teacher's: best |cos|, its sign
            best = cosine.abs().max(dim=1, keepdim=True).values
            v_s = v_s @ torch.where(best == cosine.abs(), torch.sign(cosine), torch.zeros_like(cosine))
            v_s, v_t = v_s * s_t.unsqueeze(1), v_t * s_t.unsqueeze(1)
            if previous is not None:
                diff = (rbf(v_s, previous[0]) - rbf(v_t, previous[1]).detach()).pow(2)
                terms.append(torch.where(torch.isfinite(diff), diff, torch.zeros_like(diff)).sum())
            previous = (v_s, v_t)
        losses = {"loss_ce": 1.0 * F.cross_entropy(logits, y), "loss_kd": 1.0 * sum(terms) / x.shape[0]}
        return logits, losses, list(reference.student.parameters())
    return expected


@pytest.mark.parametrize("faithful", [True, False])
def test_kdsvd_matches_mdistiller_by_default_and_the_paper_when_switched(faithful):
    distiller, reference, x, y = build("KDSVD", "KDSVD.FAITHFUL", str(faithful))
    losses = check_step(distiller, reference, x, y, kdsvd_expected(width_axis=faithful))
    assert losses["loss_kd"].item() > 0
    if not faithful:  # the switch gives exactly the loss this project had before the default changed
        _, feats_s, feats_t = student_logits_and_feats(reference, x)
        torch.testing.assert_close(losses["loss_kd"], kdsvd_loss(feats_s["feats"][1:], feats_t["feats"][1:], 1),
                                   **CLOSE)


def test_the_faithful_variants_differ_from_the_switched_ones():
    """The defaults are not the corrected variants under another name: on the same weights and
    batch, each switch changes the loss. (VID's variants start from the same variances; they
    differ in what a step trains, checked above.)"""
    for method in ("OFD", "KDSVD"):
        values = []
        for faithful in ("True", "False"):
            distiller, _, x, y = build(method, f"{method}.FAITHFUL", faithful)
            values.append(distiller.train()(image=x, target=y, epoch=1)[1]["loss_kd"].item())
        assert abs(values[0] - values[1]) > 1e-6 * abs(values[0]), method


def test_a_train_mode_teacher_is_never_shared():
    """Faithful OFD moves its teacher's BatchNorm statistics: a stack (one eval-mode teacher pass
    for all terms) refuses it, and paired training gives it a teacher of its own."""
    from mdistiller.distillers import check_distiller_cfg
    from mdistiller.engine.build import teacher_train_key
    from mdistiller.engine.paired import shares_teacher
    from mdistiller.errors import ConfigError

    stack = ["DISTILLER.TYPE", "SLD", "DISTILLER.STACK", "[OFD]", "SOLVER.TRAINER", "ours"]
    with pytest.raises(ConfigError, match=r"include OFD, whose teacher runs in train mode \(OFD.FAITHFUL True, "
                                          r"mdistiller's behaviour\); .* set OFD.FAITHFUL False"):
        check_distiller_cfg(load_cfg(None, stack))
    check_distiller_cfg(load_cfg(None, stack + ["OFD.FAITHFUL", "False"]))
    assert teacher_train_key(load_cfg(None, ["DISTILLER.TYPE", "OFD"])) == "OFD.FAITHFUL"
    assert teacher_train_key(load_cfg(None, ["DISTILLER.TYPE", "OFD", "OFD.FAITHFUL", "False"])) is None
    assert teacher_train_key(load_cfg(None, ["DISTILLER.TYPE", "KD"])) is None
    assert not shares_teacher(build("OFD")[0]) and shares_teacher(build("OFD", "OFD.FAITHFUL", "False")[0])
