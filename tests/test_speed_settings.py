"""Exact speed settings (engine/device.py): SOLVER.CHANNELS_LAST, DISTILLER.TEACHER_CHUNK and
DISTILLER.TEACHER_COMPILE accept `auto`, resolve as documented, and change results by float
rounding at most."""
import copy

import pytest
import torch

from mdistiller.benchmark.speed import benchmark_settings
from mdistiller.config import load_cfg
from mdistiller.distillers import build_distiller
from mdistiller.distillers.base import concat_outputs, split_outputs, teacher_forward
from mdistiller.engine.device import (CPU_TEACHER_CHUNK, TEACHER_COMPILE_MIN_EPOCHS, compile_networks, cpp_compiler,
                                      describe_speed_settings, keep_freed_memory, prepare_model, speed_settings)
from mdistiller.engine.optim import build_optimizer
from mdistiller.errors import ConfigError
from mdistiller.models import create_model

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)
SLD = ["DISTILLER.TYPE", "SLD", "DISTILLER.STUDENT", "resnet8", "DISTILLER.TEACHER", "resnet14",
       "SOLVER.TRAINER", "ours", "SLD.GAMMA", "0"]


def test_defaults_are_auto_and_resolve_per_device():
    cfg = load_cfg()
    assert cfg.SOLVER.CHANNELS_LAST == cfg.DISTILLER.TEACHER_CHUNK == "auto"
    assert cfg.DISTILLER.TEACHER_COMPILE is False  # an option: no step-level gain measured (README, Speed)
    # documented rule: channels_last on for CPUs with oneDNN and for CUDA; CPU teacher micro-batches
    assert speed_settings(cfg, CPU) == {"channels_last": torch.backends.mkldnn.is_available(),
                                        "teacher_chunk": CPU_TEACHER_CHUNK, "teacher_compile": False}
    assert speed_settings(cfg, CUDA) == {"channels_last": True, "teacher_chunk": 0, "teacher_compile": False}
    assert speed_settings(cfg, torch.device("mps")) == {"channels_last": False, "teacher_chunk": 0,
                                                        "teacher_compile": False}
    assert describe_speed_settings(cfg, CUDA) == ("SOLVER.CHANNELS_LAST True (auto) | "
                                                  "DISTILLER.TEACHER_CHUNK whole batch (auto) | "
                                                  "DISTILLER.TEACHER_COMPILE False")


def test_this_cpu_has_onednn_so_auto_turns_channels_last_on():
    # the project's CPU wheels ship oneDNN; if this fails the README's CPU numbers do not apply
    assert speed_settings(load_cfg(), CPU)["channels_last"] is True


def test_explicit_values_win_and_bad_values_get_one_line_errors():
    cfg = load_cfg(None, ["SOLVER.CHANNELS_LAST", "False", "DISTILLER.TEACHER_CHUNK", "0",
                          "DISTILLER.TEACHER_COMPILE", "False"])
    assert speed_settings(cfg, CUDA) == {"channels_last": False, "teacher_chunk": 0, "teacher_compile": False}
    assert describe_speed_settings(cfg, CPU) == ("SOLVER.CHANNELS_LAST False | DISTILLER.TEACHER_CHUNK whole batch | "
                                                 "DISTILLER.TEACHER_COMPILE False")
    assert speed_settings(load_cfg(None, ["DISTILLER.TEACHER_CHUNK", "16"]), CUDA)["teacher_chunk"] == 16
    for key, value, message in (("SOLVER.CHANNELS_LAST", "fast", "expects auto or a bool, got str 'fast'"),
                                ("DISTILLER.TEACHER_CHUNK", "True", "expects auto or a int, got bool True"),
                                ("DISTILLER.TEACHER_CHUNK", "-2", "is -2; use auto, 0 or a batch size"),
                                ("DISTILLER.TEACHER_COMPILE", "64", "expects auto or a bool, got int 64")):
        with pytest.raises(ConfigError, match=f"^config key {key} {message}") as err:
            load_cfg(None, [key, value])
        assert "\n" not in str(err.value)


def test_benchmark_defaults_are_the_configs():
    settings, auto = benchmark_settings(load_cfg(), CPU)
    assert settings == {"amp": "none", "channels_last": torch.backends.mkldnn.is_available(), "compile_": False,
                        "cuda_graph": False, "teacher_chunk": CPU_TEACHER_CHUNK, "teacher_compile": False}
    assert auto == ["channels_last", "teacher_chunk"]
    settings, auto = benchmark_settings(load_cfg(None, ["SOLVER.AMP", "bf16"]), CPU, channels_last=False,
                                        teacher_compile=False)
    assert settings["amp"] == "bf16" and settings["channels_last"] is False and auto == ["teacher_chunk"]
    assert settings["teacher_compile"] is False


def test_chunked_teacher_equals_one_call():
    torch.manual_seed(0)
    teacher = create_model("resnet14", 10).eval()
    x = torch.randn(20, 3, 32, 32)
    with torch.no_grad():
        whole = teacher(x)
        for chunk in (0, 7, 20, 64):
            logits, feats = teacher_forward(teacher, x, chunk)
            torch.testing.assert_close(logits, whole[0], rtol=1e-5, atol=1e-6)
            assert feats.keys() == whole[1].keys()
            for a, b in zip(feats["feats"], whole[1]["feats"]):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(feats["pooled_feat"], whole[1]["pooled_feat"], rtol=1e-5, atol=1e-6)
    parts = split_outputs(whole, [5, 15])
    joined = concat_outputs(parts)
    assert torch.equal(joined[0], whole[0]) and all(torch.equal(a, b) for a, b in zip(joined[1]["feats"],
                                                                                     whole[1]["feats"]))


def test_run_teacher_uses_the_chunk():
    cfg = load_cfg(None, SLD)
    torch.manual_seed(0)
    distiller = build_distiller(cfg, create_model("resnet8", 10), create_model("resnet14", 10)).train()
    calls = []
    distiller.teacher.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    views = [torch.randn(6, 3, 32, 32), torch.randn(6, 3, 32, 32)]
    whole = distiller.run_teacher(views)
    distiller.teacher_chunk = 5
    chunked = distiller.run_teacher(views)
    assert calls == [12, 5, 1, 5, 1]  # whole: both views in one forward; chunked: each view on its own
    for (a, _), (b, _) in zip(whole, chunked):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def sld_step(distiller, cfg, batch, channels_last):
    prepare_model(distiller, CPU, channels_last).train()
    if channels_last:
        batch = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in batch.items()}
    optimizer = build_optimizer(cfg, distiller.get_learnable_parameters())
    _, losses = distiller(**batch, epoch=1)
    loss = sum(losses.values())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach(), {k: v.detach().contiguous() for k, v in distiller.student.state_dict().items()}


def assert_weights_close(weights, reference, rtol=1e-5):
    """All floating tensors together within `rtol` of the reference, relative to their norm (per
    tensor, near-zero biases would turn rounding into large ratios); other tensors equal."""
    keys = [key for key, value in reference.items() if value.is_floating_point()]
    flat = lambda state: torch.cat([state[key].double().flatten() for key in keys])
    error = (flat(weights) - flat(reference)).norm() / flat(reference).norm()
    assert error <= rtol, f"relative difference {error:.2e}"
    assert all(torch.equal(weights[key], value) for key, value in reference.items() if key not in keys)


def test_one_sld_step_with_and_without_channels_last_agrees():
    cfg = load_cfg(None, SLD)
    torch.manual_seed(0)
    distiller = build_distiller(cfg, create_model("resnet8", 10), create_model("resnet14", 10))
    twin, exact = copy.deepcopy(distiller), copy.deepcopy(distiller).double()
    before = copy.deepcopy(distiller.student.state_dict())
    batch = {"image_weak": torch.randn(8, 3, 32, 32), "image_strong": torch.randn(8, 3, 32, 32),
             "target": torch.randint(0, 10, (8,))}
    loss_a, weights_a = sld_step(distiller, cfg, batch, channels_last=False)
    loss_b, weights_b = sld_step(twin, cfg, batch, channels_last=True)
    loss_c, weights_c = sld_step(exact, cfg, {k: v.double() if v.is_floating_point() else v
                                              for k, v in batch.items()}, channels_last=False)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=0)
    torch.testing.assert_close(loss_b.double(), loss_c, rtol=1e-5, atol=0)
    # Both layouts within 1e-5 of each other and of the float64 step (the arbiter: with one
    # thread this torch's float32 NCHW stem gradient is the less exact of the two layouts).
    assert_weights_close(weights_b, weights_c)
    assert_weights_close(weights_a, weights_c)
    assert_weights_close(weights_b, weights_a)
    assert not torch.equal(weights_a["fc.weight"], before["fc.weight"])  # the step did train


def test_keep_freed_memory_on_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    assert keep_freed_memory() is True


def test_teacher_compile_auto_only_for_long_runs_on_a_cpu_with_a_compiler(monkeypatch):
    """Short runs, subsets and accelerators never compile by default (the test suite trains
    hundreds of tiny runs); True without a compiler is a one-line error, not a failed step."""
    auto = ["DISTILLER.TEACHER_COMPILE", "auto"]
    long_run = auto + ["SOLVER.EPOCHS", str(TEACHER_COMPILE_MIN_EPOCHS)]
    compiles = lambda opts, device=CPU: speed_settings(load_cfg(None, opts), device)["teacher_compile"]
    assert compiles(long_run) is (cpp_compiler() is not None)
    assert compiles(long_run + ["SOLVER.AMP", "bf16"]) is False
    assert compiles(auto + ["SOLVER.EPOCHS", str(TEACHER_COMPILE_MIN_EPOCHS - 1)]) is False
    assert compiles(long_run + ["DATASET.TRAIN_SUBSET", "500"]) is False
    assert compiles(long_run, CUDA) is False
    assert compiles(["SOLVER.EPOCHS", "1", "DISTILLER.TEACHER_COMPILE", "True"], CUDA) is True
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    assert cpp_compiler() is None and compiles(long_run) is False
    with pytest.raises(ConfigError, match="^config key DISTILLER.TEACHER_COMPILE is True but no C[+][+] compiler") as err:
        compiles(["DISTILLER.TEACHER_COMPILE", "True"])
    assert "\n" not in str(err.value)


@pytest.mark.skipif(cpp_compiler() is None, reason="torch.compile on a CPU needs a C++ compiler")
def test_one_sld_step_with_and_without_a_frozen_compiled_teacher_agrees():
    """DISTILLER.TEACHER_COMPILE is exact up to float rounding: same loss and student weights
    within 1e-5 relative after one step; inductor's freezing flag stays off for other compiles."""
    import torch._inductor.config as inductor_config

    cfg = load_cfg(None, SLD)
    torch.manual_seed(0)
    distiller = build_distiller(cfg, create_model("resnet8", 10), create_model("resnet14", 10))
    twin = copy.deepcopy(distiller)
    compile_networks(twin, compile_all=False, freeze_teacher=True)
    batch = {"image_weak": torch.randn(8, 3, 32, 32), "image_strong": torch.randn(8, 3, 32, 32),
             "target": torch.randint(0, 10, (8,))}
    loss_a, weights_a = sld_step(distiller, cfg, batch, channels_last=False)
    loss_b, weights_b = sld_step(twin, cfg, batch, channels_last=False)
    assert hasattr(twin.teacher, "_compiled_call_impl") and twin.teacher._compiled_call_impl is not None
    assert getattr(twin.student, "_compiled_call_impl", None) is None  # the student stays eager
    assert inductor_config.freezing is False
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=0)
    assert_weights_close(weights_b, weights_a)


def test_channels_last_auto_is_off_for_mdistiller_style_distillers_and_true_still_forces_it():
    """mdistiller-style files run the models themselves and may `.view()` the features."""
    from mdistiller.distillers import _base, registry

    class ViewsFeatures(_base.Distiller):
        def forward_train(self, image, target, **kwargs):
            raise NotImplementedError

    registry.distiller_dict["TEST_VIEWS_FEATURES"] = ViewsFeatures
    try:
        cfg = load_cfg(None, ["DISTILLER.TYPE", "TEST_VIEWS_FEATURES"])
        assert speed_settings(cfg, CUDA)["channels_last"] is False
        assert describe_speed_settings(cfg, CUDA).startswith(
            "SOLVER.CHANNELS_LAST False (auto: off for the mdistiller-style distiller TEST_VIEWS_FEATURES) | ")
        forced = load_cfg(None, ["DISTILLER.TYPE", "TEST_VIEWS_FEATURES", "SOLVER.CHANNELS_LAST", "True"])
        assert speed_settings(forced, CUDA)["channels_last"] is True
        assert describe_speed_settings(forced, CUDA).startswith("SOLVER.CHANNELS_LAST True | ")
    finally:
        del registry.distiller_dict["TEST_VIEWS_FEATURES"]
    assert speed_settings(load_cfg(None, ["DISTILLER.TYPE", "SLD"]), CUDA)["channels_last"] is True  # built-ins: on


def test_batches_reach_the_models_in_the_layout_the_run_chose():
    """The fast loader may hand over NHWC images; a run with channels_last off (an mdistiller-style
    distiller under auto) must get NCHW ones, whose features `.view()` accepts."""
    from mdistiller.engine.device import to_device

    nhwc = torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    batch = to_device({"image": nhwc, "target": torch.zeros(2, dtype=torch.long)}, CPU, channels_last=False)
    assert batch["image"].is_contiguous() and torch.equal(batch["image"], nhwc)
    assert to_device(nhwc.contiguous(), CPU, channels_last=True).is_contiguous(memory_format=torch.channels_last)
