"""The model zoo: checkpoint compatibility with mdistiller/RepDistiller, the feats contract,
the registries and their errors.

Compatibility is proven with the shared fixtures (../shared/compat or $MDISTILLER_SHARED):
deterministic weights built from the reference state-dict manifest must load strictly and give
the reference architectures' logits. Those tests skip, saying why, when the folder is absent.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mdistiller.errors import CheckpointError, ConfigError
from mdistiller.models import (cifar_model_dict, create_model, imagenet_model_dict, model_entry, model_names,
                               tiny_imagenet_model_dict)
from mdistiller.models.common import channel_shuffle
from mdistiller.models.imagenet import MobileNetV1

REPO = Path(__file__).resolve().parents[1]
COMPAT = Path(os.environ.get("MDISTILLER_SHARED") or REPO.parent / "shared") / "compat"
NUM_CLASSES = {"cifar100": 100, "tiny_imagenet": 200, "imagenet": 1000}


def _load_compat():
    if not (COMPAT / "model_manifest.json").is_file():
        return None, None, None
    spec = importlib.util.spec_from_file_location("synthetic_weights", COMPAT / "synthetic_weights.py")
    synthetic = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synthetic)
    manifest = json.loads((COMPAT / "model_manifest.json").read_text())
    reference = json.loads((COMPAT / "reference_logits.json").read_text())
    return manifest, reference, synthetic


MANIFEST, REFERENCE, SYNTHETIC = _load_compat()
needs_compat = pytest.mark.skipif(MANIFEST is None, reason=f"{COMPAT} not found: set MDISTILLER_SHARED to the "
                                                           "shared folder to run the compatibility checks")
MANIFEST_ENTRIES = [(ds, name) for ds in MANIFEST for name in MANIFEST[ds]] if MANIFEST else []


def _synthetic_model(dataset, name):
    """`name` with the manifest's deterministic weights, loaded strictly, in eval mode."""
    model = create_model(name, NUM_CLASSES[dataset], dataset)
    entry = MANIFEST[dataset][name]
    own = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(own) == list(entry["state_dict"]), "parameter/buffer names or their order differ"
    assert own == entry["state_dict"], "shapes differ"
    assert sum(p.numel() for p in model.parameters()) == entry["params"]
    model.load_state_dict(SYNTHETIC.make_state_dict(entry["state_dict"]), strict=True)
    return model.eval()


# ----------------------------------------------------------------------------- compatibility
@needs_compat
@pytest.mark.parametrize("dataset,name", MANIFEST_ENTRIES, ids=[f"{d}-{n}" for d, n in MANIFEST_ENTRIES])
def test_reference_weights_load_strictly_and_reproduce_reference_logits(dataset, name):
    model = _synthetic_model(dataset, name)
    ref = REFERENCE.get(dataset, {}).get(name)
    if ref is None:  # Tiny-ImageNet ShuffleV2: no reference forward (mdistiller's crashes at 64x64)
        with torch.no_grad():
            logits, _ = model(SYNTHETIC.make_images(2, 64))
        assert logits.shape == (2, NUM_CLASSES[dataset]) and torch.isfinite(logits).all()
        return
    n, _, size, _ = ref["input"]
    with torch.no_grad():
        logits, feats = model(SYNTHETIC.make_images(n, size))
    expected = torch.tensor(ref["logits"])
    assert logits.shape == expected.shape
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


@needs_compat
def test_every_manifest_model_is_registered_with_its_teacher_checkpoint():
    for name, entry in MANIFEST["cifar100"].items():
        _, default = cifar_model_dict[name]
        expected = entry["teacher_ckpt"] and f"download_ckpts/cifar_teachers/{entry['teacher_ckpt']}"
        assert default == expected, name
    assert set(MANIFEST["tiny_imagenet"]) == set(tiny_imagenet_model_dict)
    assert set(MANIFEST["imagenet"]) <= set(imagenet_model_dict)


def test_cifar_registry_has_mdistiller_names_and_default_teacher_paths():
    teachers = ["resnet56", "resnet110", "resnet32x4", "ResNet50", "wrn_40_2", "vgg13"]
    students = ["resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet8x4", "ResNet18", "ResNet34",
                "wrn_16_1", "wrn_16_2", "wrn_40_1", "vgg8", "vgg11", "vgg16", "vgg19", "MobileNetV2", "ShuffleV1",
                "ShuffleV2"]
    assert set(cifar_model_dict) == set(teachers + students)
    for name in teachers:
        assert cifar_model_dict[name][1] == f"download_ckpts/cifar_teachers/{name}_vanilla/ckpt_epoch_240.pth"
    for name in students:
        assert cifar_model_dict[name][1] is None
    assert all(callable(ctor) for ctor, _ in cifar_model_dict.values())


def test_imagenet_mobilenetv2_name_builds_mobilenetv1_like_mlkd_and_sld():
    assert imagenet_model_dict["MobileNetV2"] is MobileNetV1
    assert isinstance(create_model("MobileNetV2", 1000, "imagenet"), MobileNetV1)


def test_import_without_side_effects_in_a_fresh_interpreter():
    code = "from mdistiller.models import cifar_model_dict, imagenet_model_dict; print(len(cifar_model_dict))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(len(cifar_model_dict))


# ----------------------------------------------------------------------------- feats contract
CIFAR_NAMES = list(cifar_model_dict)
# spatial size of each feats entry for a 32x32 input
CIFAR_SPATIAL = {
    "resnet": [32, 32, 16, 8], "ResNet": [32, 32, 16, 8, 4], "wrn": [32, 32, 16, 8], "vgg": [32, 16, 8, 4, 4],
    "MobileNetV2": [16, 16, 8, 4, 2], "ShuffleV1": [32, 16, 8, 4], "ShuffleV2": [32, 16, 8, 4],
}


def _family(name):
    return next(k for k in CIFAR_SPATIAL if name.startswith(k))


def _classifier(model):
    for attr in ("fc", "linear", "classifier"):
        if hasattr(model, attr):
            layer = getattr(model, attr)
            return layer[-1] if isinstance(layer, nn.Sequential) else layer
    raise AssertionError("no classifier")


@pytest.mark.parametrize("name", CIFAR_NAMES)
def test_cifar_feats_contract(name):
    torch.manual_seed(0)
    model = create_model(name, 100).eval()
    with torch.no_grad():
        logits, feats = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 100)
    f, pre, pooled = feats["feats"], feats["preact_feats"], feats["pooled_feat"]
    assert len(f) == len(pre) == len(model.get_stage_channels())
    assert [t.shape[1] for t in f] == [t.shape[1] for t in pre] == model.get_stage_channels()
    assert [t.shape[-1] for t in f] == CIFAR_SPATIAL[_family(name)]
    assert all(a.shape == b.shape for a, b in zip(f, pre))
    assert pre[0] is f[0], "the stem entry is its own pre-activation (mdistiller)"
    # pooled_feat is exactly what the classifier sees
    assert pooled.shape == (2, _classifier(model).in_features)
    torch.testing.assert_close(_classifier(model)(pooled), logits)
    family = _family(name)
    if family == "wrn":  # pre-activation network: preact = the next BN applied to the stage output
        nxt = [model.block2.layer[0].bn1, model.block3.layer[0].bn1, model.bn1]
        for i, bn in enumerate(nxt, start=1):
            torch.testing.assert_close(pre[i], bn(f[i]))
        torch.testing.assert_close(pooled, F.relu(pre[-1]).mean((2, 3)))
    elif family == "MobileNetV2":  # linear bottlenecks: no activation after a stage
        assert all(a is b for a, b in zip(f, pre))
    elif family == "ShuffleV2":  # outputs are channel-shuffled after the ReLU
        for a, b in zip(f[1:], pre[1:]):
            torch.testing.assert_close(a, channel_shuffle(F.relu(b), 2))
    else:
        for a, b in zip(f, pre):
            torch.testing.assert_close(a, F.relu(b))
        torch.testing.assert_close(pooled, f[-1].mean((2, 3)))
    assert isinstance(model.get_feat_modules(), nn.ModuleList)


@pytest.mark.parametrize("name", [n for n in CIFAR_NAMES if not n.startswith("Shuffle")])
def test_bn_before_relu_matches_the_stages_ofd_aligns_with(name):
    model = create_model(name, 100).eval()
    bns = model.get_bn_before_relu()
    assert bns and all(isinstance(bn, nn.BatchNorm2d) for bn in bns)
    # OFD pairs them with the last len(bns) pre-activation features
    assert [bn.num_features for bn in bns] == model.get_stage_channels()[-len(bns):]


@pytest.mark.parametrize("name", ["ShuffleV1", "ShuffleV2"])
def test_shufflenets_cannot_be_ofd_teachers(name):
    with pytest.raises(NotImplementedError, match=name):
        create_model(name, 100).get_bn_before_relu()


def test_wrn_preact_features_do_not_update_batchnorm_statistics_twice():
    model = create_model("wrn_16_1", 100).train()
    model(torch.randn(4, 3, 32, 32))
    counts = {n: int(b) for n, b in model.named_buffers() if n.endswith("num_batches_tracked")}
    assert set(counts.values()) == {1}


def test_vgg_pools_before_the_last_block_only_for_64px_inputs():
    model = create_model("vgg8", 100).eval()
    with torch.no_grad():
        _, f32 = model(torch.randn(1, 3, 32, 32))
        _, f64 = model(torch.randn(1, 3, 64, 64))
    assert [t.shape[-1] for t in f32["feats"]] == [32, 16, 8, 4, 4]
    assert [t.shape[-1] for t in f64["feats"]] == [64, 32, 16, 8, 4]


@pytest.mark.parametrize("name,channels", [("ResNet18", [64, 64, 128, 256, 512]), ("ShuffleV2", [24, 116, 232, 464]),
                                           ("MobileNetV2", [32, 24, 32, 64, 1280])])
def test_tiny_imagenet_models_run_at_64px(name, channels):
    model = create_model(name, 200, "tiny_imagenet").eval()
    with torch.no_grad():
        logits, feats = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 200)
    assert [t.shape[1] for t in feats["feats"]] == channels == model.get_stage_channels()
    assert feats["pooled_feat"].dim() == 2 and len(feats["preact_feats"]) == len(feats["feats"])


def test_imagenet_resnet_feats_follow_mdistiller_layout():
    model = create_model("ResNet18", 10, "imagenet").eval()
    with torch.no_grad():
        logits, feats = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 10)
    # stem before max-pool, then layer1..layer4
    assert [tuple(t.shape[1:]) for t in feats["feats"]] == [(64, 32, 32), (64, 16, 16), (128, 8, 8), (256, 4, 4),
                                                            (512, 2, 2)]
    assert [t.shape[1] for t in feats["feats"]] == model.get_stage_channels()
    for a, b in zip(feats["feats"], feats["preact_feats"]):
        torch.testing.assert_close(a, F.relu(b))
    assert (feats["preact_feats"][-1] < 0).any(), "preact features keep their negative part"
    torch.testing.assert_close(model.fc(feats["pooled_feat"]), logits)
    assert [bn.num_features for bn in model.get_bn_before_relu()] == [128, 256, 512]


def test_imagenet_mobilenetv1_has_four_stage_features_without_stem():
    model = MobileNetV1(num_classes=10).eval()
    with torch.no_grad():
        logits, feats = model(torch.randn(1, 3, 64, 64))
    assert [tuple(t.shape[1:]) for t in feats["feats"]] == [(128, 16, 16), (256, 8, 8), (512, 4, 4), (1024, 2, 2)]
    assert model.get_stage_channels() == [128, 256, 512, 1024]
    assert [bn.num_features for bn in model.get_bn_before_relu()] == [128, 256, 512, 1024]
    for a, b in zip(feats["feats"], feats["preact_feats"]):
        torch.testing.assert_close(a, F.relu(b))
    assert feats["pooled_feat"].shape == (1, 1024)


# ----------------------------------------------------------------------------- torchvision weights
def test_imagenet_resnets_never_download_by_default(monkeypatch):
    from torchvision.models._api import WeightsEnum

    def refuse(*args, **kwargs):
        raise AssertionError("download attempted")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", refuse)
    create_model("ResNet18", 1000, "imagenet")
    imagenet_model_dict["ResNet18"](pretrained=False)


def test_imagenet_pretrained_uses_torchvision_weights_api(monkeypatch):
    from torchvision.models._api import WeightsEnum

    reference = imagenet_model_dict["ResNet18"]()
    asked = []

    def fake_get_state_dict(self, *args, **kwargs):
        asked.append(self.name)
        return reference.state_dict()

    monkeypatch.setattr(WeightsEnum, "get_state_dict", fake_get_state_dict)
    model = imagenet_model_dict["ResNet18"](pretrained=True)  # mdistiller's call
    assert asked == ["IMAGENET1K_V1"]
    torch.testing.assert_close(model.fc.weight, reference.fc.weight)
    with pytest.raises(ConfigError, match="choose one of IMAGENET1K_V1"):
        imagenet_model_dict["ResNet18"](weights="NOPE")
    with pytest.raises(ConfigError, match="num_classes=1000"):
        imagenet_model_dict["ResNet18"](num_classes=10, weights="IMAGENET1K_V1")


def test_imagenet_weights_download_failure_is_one_line(monkeypatch):
    from urllib.error import URLError

    from torchvision.models._api import WeightsEnum

    def offline(self, *args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    with pytest.raises(CheckpointError) as err:
        imagenet_model_dict["ResNet34"](pretrained=True)
    msg = str(err.value)
    assert "\n" not in msg and "ResNet34" in msg and "resnet34-" in msg and "DISTILLER.TEACHER_WEIGHTS" in msg


def test_mobilenetv1_has_no_pretrained_weights():
    with pytest.raises(ConfigError, match="DISTILLER.TEACHER_WEIGHTS"):
        imagenet_model_dict["MobileNetV2"](pretrained=True)


# ----------------------------------------------------------------------------- registry errors
def test_unknown_name_is_a_one_line_config_error_listing_choices():
    with pytest.raises(ConfigError) as err:
        create_model("resnet9", 100)
    msg = str(err.value)
    assert "\n" not in msg and "DISTILLER.STUDENT" in msg and "'resnet9'" in msg
    assert all(name in msg for name in cifar_model_dict)
    with pytest.raises(ConfigError) as err:
        create_model("ResNet34", 200, "tiny_imagenet", key="DISTILLER.TEACHER")
    assert str(err.value) == ("config key DISTILLER.TEACHER is 'ResNet34', not a tiny_imagenet model; "
                              "choose one of ResNet18, MobileNetV2, ShuffleV2")


def test_unknown_dataset_is_a_config_error():
    with pytest.raises(ConfigError, match="DATASET.TYPE is 'mnist'"):
        model_names("mnist")


def test_model_names_per_dataset():
    assert model_names("cifar100") == list(cifar_model_dict)
    assert model_names("imagenet") == list(imagenet_model_dict)
    assert model_names("tiny_imagenet") == ["ResNet18", "MobileNetV2", "ShuffleV2"]


def test_image_folders_use_cifar_architectures_without_cifar_teacher_checkpoints():
    assert model_names("imagefolder") == list(cifar_model_dict)
    assert model_entry("resnet56", "imagefolder")[1] is None
    assert model_entry("resnet56", "cifar100")[1] is not None
    model = create_model("resnet8", 7, "imagefolder")
    assert model(torch.randn(1, 3, 48, 48))[0].shape == (1, 7)
