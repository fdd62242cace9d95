"""LOG.WANDB True (mdistiller/engine/wandb_log.py) with the real wandb library in offline mode:
the run's history, summary and config read back from the run's own transaction log."""
import os
import sys

import pytest
import torch

from helpers.tiny import TinyKD, TinyNet, folder, tiny_cfg, tiny_trainer
from helpers.tools import common, load_tool
from helpers.wandb_records import offline_runs
from mdistiller.benchmark.runner import execute
from mdistiller.benchmark.spec import Run
from mdistiller.engine.distributed import DistInfo
from mdistiller.engine.trainer import StudentRun
from mdistiller.errors import ConfigError

pytest.importorskip("wandb", reason="wandb is an extra: pip install -e \".[wandb]\"")


@pytest.fixture
def wandb_dir(tmp_path, monkeypatch):
    path = tmp_path / "wandb_home"
    path.mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    yield path
    import wandb

    wandb.teardown()  # wandb's process-wide setup keeps the first WANDB_DIR it saw; the next test gets its own


def test_every_epoch_and_best_acc_are_logged_and_a_resume_continues_the_same_run(tmp_path, wandb_dir):
    cfg = tiny_cfg(tmp_path, "LOG.WANDB", True, "EXPERIMENT.TAG", "kd,tiny")
    best = tiny_trainer(cfg).fit()[0]
    (first,) = offline_runs(wandb_dir)
    assert [h["_step"] for h in first.history] == [1, 2]
    assert all({"test_acc", "train_loss", "current lr", "loss_terms/loss_kd"} <= set(h) for h in first.history)
    assert first.summary["best_acc"] == pytest.approx(best)
    assert (first.project, first.name, first.tags) == ("p", "p/run", ["kd", "tiny"])
    assert first.config["SOLVER"]["EPOCHS"] == 2 and first.config["DISTILLER"]["TYPE"] == "KD"
    kept = open(os.path.join(folder(cfg), "wandb_id.txt")).read().strip()
    assert kept == first.id

    longer = tiny_cfg(tmp_path, "LOG.WANDB", True, "EXPERIMENT.TAG", "kd,tiny", "SOLVER.EPOCHS", 3)
    tiny_trainer(longer).fit(resume=True)
    _, resumed = offline_runs(wandb_dir)
    assert resumed.id == first.id  # the same wandb run, continued
    assert [h["_step"] for h in resumed.history] == [3] and "test_acc" in resumed.history[0]


def test_the_command_line_overrides_name_and_tag_the_run_as_mdistiller_did(tmp_path, wandb_dir, folder_data):
    long_path = "/" + "x" * 80
    args = common(folder_data, tmp_path, "named", "LOG.WANDB", "True", "EXPERIMENT.TAG", "kd,res8",
                  "DATASET.CACHE_DIR", long_path)
    assert load_tool("train").main(args) == 0
    (logged,) = offline_runs(wandb_dir)
    opts = [a for a in args if a != "--quiet"]  # the KEY VALUE pairs tools/train.py was given
    extra = [f"{key}:{value}" for key, value in zip(opts[::2], opts[1::2])]
    # mdistiller: NAME (or TAG), then the override tags joined by commas, with none before the first
    assert logged.name == "cli/named" + ",".join(extra) and extra[-1] == f"DATASET.CACHE_DIR:{long_path}"
    assert logged.tags == ["kd", "res8"] + [tag[:64] for tag in extra]  # wandb takes 64 characters at most
    assert len(extra[-1]) > 64


def test_a_benchmark_run_carries_its_table_cell_and_other_ranks_log_nothing(tmp_path, wandb_dir):
    cfg = tiny_cfg(tmp_path, "LOG.WANDB", True, "SOLVER.EPOCHS", 1)
    run = Run("KD", "tiny -> tiny", 3, "student", "", [], folder(cfg))
    execute(run, cfg, "start", train=lambda c, resume, overwrite: tiny_trainer(c).fit(resume, overwrite))
    (logged,) = offline_runs(wandb_dir)
    assert (logged.config["method"], logged.config["pair"], logged.config["seed"]) == ("KD", "tiny -> tiny", 3)
    assert logged.group == "tiny -> tiny | KD"
    other = StudentRun(cfg, TinyKD(TinyNet(), TinyNet()), str(tmp_path / "rank1"), torch.device("cpu"),
                       DistInfo(rank=1, world_size=1))
    other.open_logs()
    assert other.wandb is None and len(offline_runs(wandb_dir)) == 1


def test_wandb_that_cannot_start_stops_before_the_first_epoch_in_one_line(tmp_path, wandb_dir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")  # online, with no API key anywhere: wandb refuses to start
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NETRC", str(tmp_path / "home" / "netrc"))
    cfg = tiny_cfg(tmp_path, "LOG.WANDB", True)
    with pytest.raises(ConfigError) as err:
        tiny_trainer(cfg).fit()
    assert "\n" not in str(err.value) and "wandb could not start (No API key configured" in str(err.value)
    assert "WANDB_MODE=offline" in str(err.value)
    assert not os.path.exists(os.path.join(folder(cfg), "worklog.txt"))  # no epoch was trained


def test_wandb_true_without_the_package_is_one_line_naming_the_extra(tmp_path, folder_data, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError, as when not installed
    code = load_tool("train").main(common(folder_data, tmp_path, "nowandb", "LOG.WANDB", "True"))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "LOG.WANDB is True but the wandb package is not installed" in err and '".[wandb]"' in err
