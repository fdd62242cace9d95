"""Feature distillers on real CIFAR models (resnet32x4 -> resnet8x4): training steps, connector
parameters, views, config/pairing errors, CRD's memory bank and OFD's margins."""
from pathlib import Path

import pytest
import torch

from mdistiller.config import load_cfg
from mdistiller.distillers import build_distiller, check_distiller_cfg, distiller_dict
from mdistiller.distillers.crd import ContrastMemory
from mdistiller.distillers.feature_losses import at_loss, memory_update, ofd_margin
from mdistiller.distillers.fitnet import ConvRegressor
from mdistiller.errors import ConfigError
from mdistiller.models import create_model

METHODS = ["FITNET", "AT", "NST", "PKT", "KDSVD", "OFD", "RKD", "VID", "SP", "CRD", "REVIEWKD"]
WITH_CONNECTORS = {"FITNET", "OFD", "VID", "CRD", "REVIEWKD"}
NUM_DATA = 32
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "cifar100"


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(1)
    return create_model("resnet32x4", 100)


def student(name="resnet8x4"):
    torch.manual_seed(2)
    return create_model(name, 100)


def cfg_for(method, *opts):
    return load_cfg(None, ["DISTILLER.TYPE", method, "DISTILLER.TEACHER", "resnet32x4",
                           "DISTILLER.STUDENT", "resnet8x4", *opts])


def batch(size=6, seed=3):
    """A batch as the CRD data variant yields it: index, and contrastive_index = [index, negatives].
    Negatives come from samples outside the batch, like CRD's other-class negatives."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(NUM_DATA, generator=g)
    index, others = order[:size], order[size:]
    negatives = others[torch.randint(0, len(others), (size, 16), generator=g)]
    return {"image": torch.randn(size, 3, 32, 32, generator=g), "target": torch.randint(0, 100, (size,), generator=g),
            "index": index, "contrastive_index": torch.cat([index[:, None], negatives], dim=1)}


def build(method, teacher, *opts, model=None):
    return build_distiller(cfg_for(method, *opts), model or student(), teacher, num_data=NUM_DATA)


def build_other_student(method, teacher, name="resnet20", *opts):
    cfg = cfg_for(method, "DISTILLER.STUDENT", name, *opts)
    return build_distiller(cfg, student(name), teacher, num_data=NUM_DATA)


@pytest.mark.parametrize("method", METHODS)
def test_training_steps_lower_a_finite_loss_and_train_the_connectors(method, teacher):
    # mdistiller's KDSVD term (width axis, the default) barely moves in three steps; its values
    # are checked exactly in test_faithful_features.py. The paper's variant does go down.
    opts = ["KDSVD.FAITHFUL", "False"] if method == "KDSVD" else []
    distiller = build(method, teacher, *opts).train()
    extra = [(n, p) for n, p in distiller.named_parameters() if not n.startswith(("student.", "teacher."))]
    assert distiller.get_extra_parameters() == sum(p.numel() for _, p in extra)
    assert bool(extra) == (method in WITH_CONNECTORS)
    learnable = {id(p) for p in distiller.get_learnable_parameters()}
    assert all(id(p) in learnable for _, p in extra)
    assert not any(id(p) in learnable for p in distiller.teacher.parameters())

    optimizer = torch.optim.SGD(distiller.get_learnable_parameters(), lr=0.01, momentum=0.9)
    data = batch()
    history = []
    for step in range(3):
        logits, losses = distiller(**data, epoch=30)
        assert set(losses) == {"loss_ce", "loss_kd"} and logits.shape == (len(data["target"]), 100)
        assert all(torch.isfinite(v).all() for v in losses.values())
        total = sum(v.mean() for v in losses.values())
        history.append((total.item(), losses["loss_kd"].item()))
        optimizer.zero_grad()
        total.backward()
        if step == 0:  # the feature term reaches every connector parameter, never the teacher
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for _, p in extra)
            assert all(p.grad is None for p in distiller.teacher.parameters())
        optimizer.step()
    (first_total, first_kd), (last_total, last_kd) = history[0], history[-1]
    assert last_total < first_total and last_kd < first_kd, history


def test_vid_learns_its_variances_when_not_faithful(teacher):
    """VID.FAITHFUL False (mdistiller's log-scales are not registered): they are parameters."""
    distiller = build("VID", teacher, "VID.FAITHFUL", "False")
    names = [n for n, _ in distiller.named_parameters() if n.startswith("log_scales.")]
    assert len(names) == 3
    expected = torch.full((64,), 5.0)
    assert torch.allclose(torch.nn.functional.softplus(distiller.log_scales[0]) + 1e-5, expected)


def test_two_views_use_the_weak_view_unless_configured(teacher):
    data = batch()
    weak, strong = data["image"], data["image"].flip(3)
    two_views = dict(image_weak=weak, image_strong=strong, target=data["target"], epoch=1)
    calls = {"student": 0, "teacher": 0}
    distiller = build("AT", teacher).train()
    hooks = [m.register_forward_hook(lambda *_, k=k: calls.__setitem__(k, calls[k] + 1))
             for k, m in (("student", distiller.student), ("teacher", distiller.teacher))]
    _, losses = distiller(**two_views)
    # the strong view is not even run: it would only move the student's BatchNorm statistics
    assert calls == {"student": 1, "teacher": 1}
    _, single = distiller(image=weak, target=data["target"], epoch=1)
    assert torch.allclose(losses["loss_kd"], single["loss_kd"])
    for h in hooks:
        h.remove()

    both = build("AT", teacher, "DISTILLER.FEATURE_VIEWS", "all").train()
    _, losses = both(**two_views)
    per_view = [both(image=v, target=data["target"], epoch=1)[1] for v in (weak, strong)]
    for term in ("loss_ce", "loss_kd"):
        assert torch.allclose(losses[term], per_view[0][term] + per_view[1][term])


def test_at_term_is_the_weighted_sum_over_stages(teacher):
    distiller = build("AT", teacher).train()
    data = batch()
    _, losses = distiller(**data)
    _, f_s = distiller.student(data["image"])
    with torch.no_grad():
        _, f_t = distiller.teacher(data["image"])
    expected = 1000.0 * sum(at_loss(s, t, 2.0) for s, t in zip(f_s["feats"][1:], f_t["feats"][1:]))
    assert torch.allclose(losses["loss_kd"], expected)


def test_reviewkd_warms_up_linearly(teacher):
    distiller = build("REVIEWKD", teacher).train()
    data = batch()
    kd = {epoch: distiller(**data, epoch=epoch)[1]["loss_kd"].item() for epoch in (5, 20, 40)}
    assert kd[5] == pytest.approx(kd[20] * 5 / 20, rel=1e-5)
    assert kd[40] == pytest.approx(kd[20], rel=1e-5)


def test_ofd_margins_come_from_the_teacher_bn_before_relu(teacher):
    distiller = build("OFD", teacher)
    bns = teacher.get_bn_before_relu()
    assert len(distiller.connectors) == len(bns) == 3
    for i, bn in enumerate(bns):
        assert torch.equal(getattr(distiller, f"margin{i}"), ofd_margin(bn.weight, bn.bias))
    assert not any(k.startswith("margin") for k in distiller.state_dict())  # constants, not checkpointed
    distiller.train()
    assert distiller.teacher.training  # OFD.FAITHFUL (default): mdistiller's train-mode teacher
    distiller.eval()
    assert not distiller.teacher.training
    assert not build("OFD", teacher, "OFD.FAITHFUL", "False").train().teacher.training


def test_crd_memory_bank_update_and_normaliser():
    torch.manual_seed(0)
    memory = ContrastMemory(dim=4, num_data=10, temperature=0.5, momentum=0.25)
    before_s, before_t = memory.memory_s.clone(), memory.memory_t.clone()
    v_s = torch.nn.functional.normalize(torch.randn(3, 4), dim=1)
    v_t = torch.nn.functional.normalize(torch.randn(3, 4), dim=1)
    index = torch.tensor([7, 1, 4])
    contrast = torch.tensor([[7, 0, 2], [1, 3, 5], [4, 6, 8]])
    out_s, out_t = memory(v_s, v_t, index, contrast)
    # scores of the student embedding against the teacher bank, normalised by Z = mean * N (first batch)
    raw = torch.exp(torch.einsum("bkd,bd->bk", before_t[contrast], v_s) / 0.5)
    assert memory.z[0].item() == pytest.approx(raw.mean().item() * 10, rel=1e-6)
    assert torch.allclose(out_s, raw / memory.z[0])
    raw_t = torch.exp(torch.einsum("bkd,bd->bk", before_s[contrast], v_t) / 0.5)
    assert torch.allclose(out_t, raw_t / memory.z[1])
    # rows of the batch's samples move towards the new embeddings; the rest stay
    assert torch.allclose(memory.memory_s[index], memory_update(before_s[index], v_s, 0.25))
    assert torch.allclose(memory.memory_t[index], memory_update(before_t[index], v_t, 0.25))
    untouched = [i for i in range(10) if i not in index.tolist()]
    assert torch.equal(memory.memory_s[untouched], before_s[untouched])
    # Z is estimated once and kept (it is a buffer, saved in checkpoints)
    z = memory.z.clone()
    memory(v_s, v_t, index, contrast)
    assert torch.equal(memory.z, z) and "z" in memory.state_dict()


def test_crd_needs_indices_in_the_batch(teacher):
    distiller = build("CRD", teacher).train()
    assert distiller.needs_index
    data = batch()
    with pytest.raises(ConfigError, match="CRD needs index and contrastive_index.*DATASET.INDICES"):
        distiller(image=data["image"], target=data["target"])


def test_mismatched_pairs_raise_one_line_config_errors(teacher):
    cases = [  # resnet20: channels 16/32/64, pooled 64; vgg8: widths 16/8/4/4
        ("KDSVD", "resnet20", ["KDSVD.FAITHFUL", "False"],
         r"KDSVD cannot pair teacher resnet32x4 stage channels \[64, 128, 256\] with student resnet20 "
         r"stage channels \[16, 32, 64\]; it compares singular vectors channel by channel"),
        ("KDSVD", "vgg8", [], r"KDSVD cannot pair teacher resnet32x4 stage widths \[32, 16, 8\] with student vgg8 "
                             r"stage widths \[16, 8, 4, 4\]; .* or set KDSVD.FAITHFUL False"),
        ("CRD", "resnet20", [], r"CRD: config key CRD.FEAT.STUDENT_DIM is 256, but the student resnet20's pooled "
                                r"feature has size 64; set CRD.FEAT.STUDENT_DIM 64$"),
        ("REVIEWKD", "resnet20", [], r"REVIEWKD.IN_CHANNELS is \[64, 128, 256, 256\] but this pair needs \[16, 32, 64, 64\]"),
    ]
    for method, name, opts, message in cases:
        with pytest.raises(ConfigError, match=message) as err:
            build_other_student(method, teacher, name, *opts)
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="FITNET.HINT_LAYER is 4; this pair has stage features 0..3"):
        build("FITNET", teacher, "FITNET.HINT_LAYER", 4)


def test_fitnet_regressor_covers_mdistillers_size_ratios():
    for s_shape, t_shape in [((8, 8, 8), (16, 4, 4)), ((8, 4, 4), (16, 8, 8)), ((8, 6, 6), (16, 4, 4)),
                             ((8, 4, 4), (16, 4, 4))]:
        out = ConvRegressor(s_shape, t_shape)(torch.randn(2, *s_shape))
        assert out.shape == (2, *t_shape)
    with pytest.raises(ValueError):
        ConvRegressor((8, 3, 3), (16, 4, 4))


@pytest.mark.parametrize("opts, message", [
    (["DISTILLER.TYPE", "AT", "AT.LOSS.FEAT_WEIGHT", -1],
     "AT.LOSS.FEAT_WEIGHT is -1.0; a loss weight must be a number >= 0"),
    (["DISTILLER.TYPE", "AT", "AT.P", 0], "AT.P is 0.0; it must be a positive number"),
    (["DISTILLER.TYPE", "KDSVD", "KDSVD.K", 0], "KDSVD.K is 0; it must be a whole number >= 1"),
    (["DISTILLER.TYPE", "VID", "VID.INIT_PRED_VAR", 0.0], "VID.INIT_PRED_VAR is 0.0; it must exceed VID.EPS"),
    (["DISTILLER.TYPE", "OFD", "OFD.CONNECTOR.KERNEL_SIZE", 2], "OFD.CONNECTOR.KERNEL_SIZE is 2; use an odd size"),
    (["DISTILLER.TYPE", "CRD", "DISTILLER.FEATURE_VIEWS", "all"], "set DISTILLER.FEATURE_VIEWS to weak"),
    (["DISTILLER.TYPE", "CRD", "CRD.NCE.MOMENTUM", 1.0], r"CRD.NCE.MOMENTUM is 1.0; it must be in \[0, 1\)"),
    (["DISTILLER.TYPE", "FITNET", "FITNET.INPUT_SIZE", [32]],
     r"FITNET.INPUT_SIZE is \[32\]; give the training resolution"),
    (["DISTILLER.TYPE", "REVIEWKD", "REVIEWKD.WARMUP_EPOCHS", -1], "REVIEWKD.WARMUP_EPOCHS is -1"),
])
def test_bad_values_fail_before_models_are_built(opts, message):
    with pytest.raises(ConfigError, match=message):
        check_distiller_cfg(load_cfg(None, opts))


def test_ofd_names_the_missing_model_method(teacher):
    class Bare(torch.nn.Module):
        def forward(self, x):
            raise AssertionError("not called")

    with pytest.raises(ConfigError, match="OFD needs the teacher model Bare to provide get_stage_channels()"):
        distiller_dict["OFD"](student(), Bare(), cfg_for("OFD"))


def test_every_method_has_an_mdistiller_style_config():
    for method in METHODS:
        cfg = load_cfg(CONFIGS / f"{method.lower()}.yaml")
        assert cfg.DISTILLER.TYPE == method
        assert (cfg.DISTILLER.TEACHER, cfg.DISTILLER.STUDENT) == ("resnet32x4", "resnet8x4")
        assert (cfg.SOLVER.LR, cfg.SOLVER.WEIGHT_DECAY, cfg.SOLVER.EPOCHS) == (0.05, 0.0005, 240)
    assert load_cfg(CONFIGS / "reviewkd.yaml").REVIEWKD.REVIEWKD_WEIGHT == 5.0
    assert load_cfg(CONFIGS / "crd.yaml").DATASET.INDICES is True  # SOLVER.TRAINER crd


def test_crd_takes_mdistiller_style_tuple_batches(teacher):
    """mdistiller's CRD loaders yield (image, target, index, contrastive_index) tuples and its
    trainer passes `contrastive_index=`: the same name reaches our CRD."""
    from mdistiller.engine.trainer import as_batch_dict

    distiller = build("CRD", teacher).train()
    data = batch()
    n = data["target"].shape[0]
    contrastive = torch.stack([torch.randperm(distiller.contrast.num_data)[:8] for _ in range(n)])
    tuple_batch = (data["image"], data["target"], torch.arange(n), contrastive)
    preds, losses = distiller(**as_batch_dict(tuple_batch), epoch=1)
    assert preds.shape[0] == n and torch.isfinite(sum(v.sum() for v in losses.values()))
