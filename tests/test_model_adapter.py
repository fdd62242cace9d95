"""Models from timm, torchvision and the user's own code behind the `(logits, feats)` contract
(models/adapter.py, models/external.py): hooks chosen automatically or by name, the probe
forward leaves BatchNorm alone, weights from .pth and .safetensors files, one-line errors."""
import math
import textwrap

import pytest
import torch
import torch.nn.functional as F

from mdistiller.config import load_cfg
from mdistiller.distillers import distiller_dict
from mdistiller.distillers.losses import dkd_terms
from mdistiller.distillers.shapes import describe_pair
from mdistiller.errors import CheckpointError, ConfigError
from mdistiller.models import build_teacher, create_model
from mdistiller.models.adapter import HookedClassifier

timm = pytest.importorskip("timm")  # the `timm` extra: pip install -e ".[timm]"
VIT = "timm:vit_tiny_patch16_224"
VIT_KWARGS = {"img_size": 32, "patch_size": 4}


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """`my_nets.TinyNet`: the user's own classifier, importable by module path."""
    (tmp_path / "my_nets.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn

        class TinyNet(nn.Module):
            def __init__(self, num_classes, width=8):
                super().__init__()
                self.body = nn.Sequential(
                    nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                    nn.Conv2d(width, 2 * width, 3, 2, 1), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True))
                self.head = nn.Linear(2 * width, num_classes)

            def forward(self, x):
                return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(self.body(x), 1), 1))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_nets:TinyNet"


def test_timm_cnn_features_from_feature_info_with_preacts_and_pooled():
    torch.manual_seed(0)
    model = create_model("timm:resnet10t", 5).eval()
    assert model.feature_names == ["act1", "layer1", "layer2", "layer3", "layer4"]  # timm's feature_info
    x = torch.randn(2, 3, 32, 32)
    logits, feats = model(x)
    assert torch.equal(logits, model.model(x))  # the wrapper changes no output
    assert [tuple(f.shape[1:]) for f in feats["feats"]] == [(64, 16, 16), (64, 8, 8), (128, 4, 4), (256, 2, 2),
                                                            (512, 1, 1)]
    # each stage ends in a ReLU: the feature is the activated pre-activation
    for pre, post in zip(feats["preact_feats"], feats["feats"]):
        assert torch.equal(F.relu(pre), post)
    assert (feats["preact_feats"][0] < 0).any()  # the stem's BN output, before act1
    assert torch.allclose(feats["pooled_feat"], model.model.forward_head(model.model.forward_features(x),
                                                                         pre_logits=True))
    assert model.get_stage_channels() == [64, 64, 128, 256, 512]


def test_torchvision_stages_found_by_the_probe_forward():
    model = create_model("torchvision:resnet18", 5)
    assert model.feature_names == ["relu", "layer1", "layer2", "layer3", "layer4"]  # last module per size
    assert model.classifier_name == "fc"
    logits, feats = model.eval()(torch.randn(2, 3, 32, 32))
    assert feats["pooled_feat"].shape == (2, 512) and len(feats["preact_feats"]) == 5
    assert torch.equal(F.relu(feats["preact_feats"][2]), feats["feats"][2])


def test_probe_forward_changes_no_batchnorm_statistic_nor_the_mode():
    import torchvision

    raw = torchvision.models.resnet18(num_classes=5).train()
    for m in raw.modules():  # non-trivial running statistics, so that a change would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    before = {k: v.clone() for k, v in raw.state_dict().items()}
    wrapped = HookedClassifier(raw, "torchvision:resnet18", num_classes=5)
    assert raw.training and all(m.training for m in raw.modules())
    after = wrapped.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_vit_tokens_serve_logit_methods_and_4d_methods_refuse_in_one_line():
    torch.manual_seed(0)
    vit = create_model(VIT, 5, kwargs=VIT_KWARGS)
    logits, feats = vit.eval()(torch.randn(2, 3, 32, 32))
    assert len(feats["feats"]) == 12 and feats["feats"][0].shape == (2, 65, 192)  # tokens, not maps
    assert "preact_feats" not in feats and feats["pooled_feat"].shape == (2, 192)
    teacher = create_model("timm:resnet10t", 5)
    cfg = load_cfg(None, ["DISTILLER.TEACHER", "timm:resnet10t", "DISTILLER.STUDENT", VIT])
    with pytest.raises(ConfigError) as err:
        distiller_dict["AT"](vit, teacher, cfg)
    assert str(err.value) == ("AT needs 4-D stage features (feats) from the student timm:vit_tiny_patch16_224, "
                              "which gives 3-D tensors; use a logit method (KD, DKD, SLD) or another student")
    distiller_dict["KD"](vit, teacher, cfg)  # a logit method takes any classifier
    distiller_dict["RKD"](vit, teacher, cfg)  # pooled_feat is there
    report = describe_pair(teacher, vit, cfg)
    assert "AT        AT needs 4-D stage features" in report and "RKD       fits" in report


def test_ofd_refuses_a_model_without_preactivations():
    cfg = load_cfg(None, ["DISTILLER.TEACHER", "timm:resnet10t", "DISTILLER.STUDENT", "timm:mobilenetv3_small_050"])
    student, teacher = create_model("timm:mobilenetv3_small_050", 5), create_model("timm:resnet10t", 5)
    with pytest.raises(ConfigError, match=r"^OFD needs 4-D pre-activation stage features \(preact_feats\) from the "
                                          r"student timm:mobilenetv3_small_050, which gives none;"):
        distiller_dict["OFD"](student, teacher, cfg)


def test_user_module_with_automatic_and_named_hooks(user_module):
    model = create_model(user_module, 3, kwargs={"width": 4})
    assert model.feature_names == ["body.2", "body"] and model.preact_names == ["body.2", "body.5"]
    _, feats = model.eval()(torch.randn(2, 3, 32, 32))
    assert [tuple(f.shape[1:]) for f in feats["feats"]] == [(4, 16, 16), (8, 8, 8)]
    # in-place ReLUs on hooked pre-activations are switched off, so the pre-activation survives
    assert (feats["preact_feats"][1] < 0).any() and torch.equal(F.relu(feats["preact_feats"][1]), feats["feats"][1])
    named = create_model(user_module, 3, features=["body.0", "body.3"])
    assert [tuple(f.shape[1:]) for f in named.eval()(torch.randn(2, 3, 32, 32))[1]["feats"]] == [(8, 16, 16),
                                                                                            (16, 8, 8)]


def test_state_dict_keys_are_the_plain_models_both_ways(tmp_path):
    torch.manual_seed(0)
    wrapped = create_model("timm:resnet10t", 5)
    plain = timm.create_model("resnet10t", num_classes=5)
    assert list(wrapped.state_dict()) == list(plain.state_dict())
    plain.load_state_dict(wrapped.state_dict())  # a trained student's weights load into plain timm
    wrapped2 = create_model("timm:resnet10t", 5)
    wrapped2.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(wrapped2.eval()(x)[0], plain.eval()(x))


def test_teacher_weights_from_safetensors_and_pth(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = timm.create_model("resnet10t", num_classes=4)
    save_file(source.state_dict(), str(tmp_path / "t.safetensors"))
    torch.save({"model": source.state_dict()}, tmp_path / "t.pth")
    x = torch.randn(2, 3, 32, 32)
    expected = source.eval()(x)
    for name in ("t.safetensors", "t.pth"):
        teacher = build_teacher("timm:resnet10t", 4, "imagefolder", str(tmp_path / name))
        assert not teacher.training and torch.equal(teacher(x)[0], expected), name


class Smuggled:
    """A custom class: pickling it into a checkpoint must not get it loaded."""


def test_unsafe_and_broken_weight_files_are_refused(tmp_path):
    source = create_model("timm:resnet10t", 4)
    torch.save({"model": source.state_dict(), "extra": Smuggled()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"evil.pth holds a pickled test_model_adapter.Smuggled that is not "
                                              r"safe to load"):
        build_teacher("timm:resnet10t", 4, "imagefolder", str(tmp_path / "evil.pth"))
    (tmp_path / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad}")
    with pytest.raises(CheckpointError, match=r"broken.safetensors could not be read as safetensors"):
        build_teacher("timm:resnet10t", 4, "imagefolder", str(tmp_path / "broken.safetensors"))
    with pytest.raises(ConfigError, match=r"^teacher timm:resnet10t needs trained weights: set "
                                          r"DISTILLER.TEACHER_WEIGHTS to a .pth or .safetensors file"):
        build_teacher("timm:resnet10t", 4, "imagefolder", "")


@pytest.mark.parametrize("name, kwargs, features, message", [
    ("timm:resnet_nope", {}, [], r"^config key DISTILLER.STUDENT is timm:resnet_nope, which timm does not know; e\.g\."),
    ("torchvision:resnet_nope", {}, [], r"^config key DISTILLER.STUDENT is torchvision:resnet_nope, not a torchvision"),
    ("no_such_pkg.nets:Net", {}, [], r"^config key DISTILLER.STUDENT is no_such_pkg.nets:Net, but no_such_pkg.nets "
                                     r"cannot be imported"),
    ("torch.nn:NoSuchNet", {}, [], r"torch.nn has no callable 'NoSuchNet'"),
    ("timm:resnet10t", {"num_classes": 7}, [], r"^DISTILLER.STUDENT_KWARGS sets num_classes; remove it"),
    ("timm:resnet10t", {"no_such_arg": 1}, [], r"whose constructor refuses DISTILLER.STUDENT_KWARGS"),
    ("timm:resnet10t", {}, ["layer9"], r"^model timm:resnet10t has no module 'layer9' to take features from"),
    ("resnet8", {}, ["layer1"], r"^config key DISTILLER.STUDENT_FEATURES is set, but resnet8 is a zoo model"),
    ("timm:vit_tiny_patch16_224", {}, [], r"^model timm:vit_tiny_patch16_224 fails on a 32x32 input .*img_size"),
    ("torch.nn:Identity", {}, [], r"^model torch.nn:Identity returns 32 outputs but the dataset has 5 classes"),
])
def test_bad_model_settings_are_one_line_errors(name, kwargs, features, message):
    with pytest.raises(ConfigError, match=message) as err:
        create_model(name, 5, kwargs=kwargs, features=features)
    assert "\n" not in str(err.value)


def test_an_explicit_download_fails_in_one_line_when_offline(monkeypatch, tmp_path):
    # a closed local proxy: the download fails at once, and never reaches the network
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    with pytest.raises(ConfigError, match=r"^downloading the published weights of torchvision:resnet18 failed "
                                          r"\(.*\); without network, save them to a file"):
        build_teacher("torchvision:resnet18", 1000, "imagefolder", "", kwargs={"weights": "IMAGENET1K_V1"})


def test_kwargs_mapping_from_the_command_line_and_back():
    cfg = load_cfg(None, ["DISTILLER.STUDENT_KWARGS", "{img_size: 32, patch_size: 4}",
                          "DISTILLER.TEACHER_FEATURES", "[layer1, layer2]"])
    assert dict(cfg.DISTILLER.STUDENT_KWARGS) == VIT_KWARGS and cfg.DISTILLER.TEACHER_FEATURES == ["layer1", "layer2"]
    with pytest.raises(ConfigError, match=r"^config key DISTILLER.STUDENT_KWARGS is a section"):
        load_cfg(None, ["DISTILLER.STUDENT_KWARGS", "img_size=32"])


def test_dkd_on_two_classes_is_finite_and_hand_computed():
    # two classes: no non-target distribution to compare (NCKD = 0); TCKD is the full binary KL.
    # z_s = [1, 0], z_t = [0, 1], target 0, T = 1: p_s = [s, 1-s], p_t = [1-s, s] with s = e/(1+e),
    # KL(p_t || p_s) = (2s - 1) * log(s / (1 - s)) = (2s - 1) * 1
    s = math.e / (1 + math.e)
    tckd, nckd = dkd_terms(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([0]), 1.0)
    assert tckd.item() == pytest.approx(2 * s - 1, rel=1e-6) and nckd.item() == 0.0
    # mdistiller issue #60: a probability that underflows to 0 (e^-200 in float32) made log(p)
    # -inf and the loss inf; computed from log-probabilities, KL = 200 (+ 200 e^-200)
    student = torch.tensor([[100.0, -100.0]], requires_grad=True)
    tckd, nckd = dkd_terms(student, torch.tensor([[-100.0, 100.0]]), torch.tensor([0]), 1.0)
    assert torch.softmax(student, -1)[0, 1].item() == 0.0  # the underflow the official code takes the log of
    assert tckd.item() == pytest.approx(200.0, rel=1e-6) and nckd.item() == 0.0
    (tckd + nckd).backward()
    assert torch.isfinite(student.grad).all()


@pytest.mark.slow
def test_compiled_adapter_gives_the_eager_features(user_module):
    """SOLVER.COMPILE compiles the wrapped model in place; the hooks must still fill feats."""
    torch.manual_seed(0)
    model = create_model(user_module, 3).eval()
    x, y = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    eager_logits, eager = model(y)
    model.compile()
    model(x)
    logits, feats = model(y)  # features of this call, not of the traced one
    assert torch.allclose(logits, eager_logits, atol=1e-5)
    for key in ("feats", "preact_feats"):
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(feats[key], eager[key]))
    assert torch.allclose(feats["pooled_feat"], eager["pooled_feat"], atol=1e-5)


def test_student_init_from_a_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    from mdistiller.engine.build import build_models

    torch.manual_seed(3)
    source = timm.create_model("resnet10t", num_classes=4)
    save_file(source.state_dict(), str(tmp_path / "init.safetensors"))
    opts = ["DISTILLER.TYPE", "NONE", "DATASET.TYPE", "imagefolder", "DISTILLER.STUDENT", "timm:resnet10t"]
    student, teacher = build_models(load_cfg(None, opts + ["DISTILLER.STUDENT_WEIGHTS",
                                                           str(tmp_path / "init.safetensors")]), 4)
    assert teacher is None
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in student.state_dict().items())
    with pytest.raises(CheckpointError, match=r"^config key DISTILLER.STUDENT_WEIGHTS is '.*nope.pth', which does "
                                              r"not exist; point it to a .pth or .safetensors file"):
        build_models(load_cfg(None, opts + ["DISTILLER.STUDENT_WEIGHTS", str(tmp_path / "nope.pth")]), 4)
