"""tools/bench_speed.py: the reference step computes the same loss as ours, and the CLI runs."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from mdistiller.benchmark.speed import format_table, reference_sld_losses, run_benchmark, synthetic_cifar
from mdistiller.config import load_cfg
from mdistiller.distillers import build_distiller
from mdistiller.errors import ConfigError
from mdistiller.models import create_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["DISTILLER.TYPE", "SLD", "DISTILLER.STUDENT", "resnet8", "DISTILLER.TEACHER", "resnet14",
         "SOLVER.BATCH_SIZE", "8", "SOLVER.TRAINER", "ours"]


def test_reference_step_loss_equals_the_distillers_loss():
    cfg = load_cfg(None, SMALL)
    torch.manual_seed(0)
    distiller = build_distiller(cfg, create_model("resnet8", 10), create_model("resnet14", 10)).train()
    weak, strong = torch.randn(6, 3, 32, 32), torch.randn(6, 3, 32, 32)
    target = torch.randint(0, 10, (6,))
    for epoch in (cfg.SLD.GAMMA, cfg.SLD.GAMMA + 1):  # with and without the student swap term
        _, losses = distiller(image_weak=weak, image_strong=strong, target=target, epoch=epoch)
        ours = sum(losses.values())
        ref = reference_sld_losses(distiller.student, distiller.teacher, (weak, strong), target, epoch, cfg)
        torch.testing.assert_close(ref, ours, rtol=1e-5, atol=1e-5)


def test_run_benchmark_reports_every_section():
    cfg = load_cfg(None, SMALL)
    images, labels = synthetic_cifar(64, num_classes=10)
    result = run_benchmark(cfg, images, labels, "cpu", batches=1, warmup=0, workers=0, full_epoch=True)
    assert result["data"]["pil"] > 0 and result["data"]["fast"] > 0
    assert result["step"]["reference"] > 0 and result["step"]["ours"] > 0
    assert result["epoch_seconds"]["iterations"] == 8
    lines = format_table(result)
    assert any(line.startswith("SLD train step") for line in lines)
    assert any(line.startswith("two-view data pipeline") for line in lines)


@pytest.mark.slow  # a subprocess that imports torch and trains: ~30 s on a busy 2-core machine
def test_cli_writes_json_and_rejects_bad_arguments(tmp_path):
    out = tmp_path / "speed.json"
    cmd = [sys.executable, os.path.join(REPO, "tools", "bench_speed.py"), "--synthetic", "32", "--device", "cpu",
           "--batches", "1", "--warmup", "0", "--workers", "0", "--only", "step", "--json", str(out)] + SMALL
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["step"]["speedup"] > 0
    bad = subprocess.run(cmd[:2] + ["--batches", "0"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1


def test_cuda_graph_needs_a_cuda_device(capsys):
    cfg = load_cfg(None, SMALL)
    images, labels = synthetic_cifar(16, num_classes=10)
    with pytest.raises(ConfigError, match="^config key SOLVER.CUDA_GRAPH is True but the run is on cpu"):
        run_benchmark(cfg, images, labels, "cpu", batches=1, warmup=0, workers=0, cuda_graph=True)
    # the tool says it in its own flags, before any data is read
    spec = importlib.util.spec_from_file_location("bench_speed_cli", os.path.join(REPO, "tools", "bench_speed.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["--synthetic", "16", "--device", "cpu", "--cuda-graph"] + SMALL) == 2
    assert capsys.readouterr().err == ("error: --cuda-graph needs --device cuda (got cpu) and neither --amp fp16 "
                                       "nor --compile\n")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_step_and_epoch_on_the_gpu():
    cfg = load_cfg(None, SMALL)
    images, labels = synthetic_cifar(256, num_classes=10)
    result = run_benchmark(cfg, images, labels, "cuda", batches=4, warmup=0, workers=0, full_epoch=True,
                           sections=("step",), cuda_graph=True)
    assert result["cuda_graph"] and result["step"]["ours"] > 0 and result["epoch_seconds"]["ours"] > 0
