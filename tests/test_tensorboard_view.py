"""README: `tensorboard --logdir output/<PROJECT>` shows each run's loss terms. Checked with
tensorboard's own reader (the multiplexer its server uses) on a real training's project folder."""
import os

import pytest

from helpers.tools import common, load_tool

pytest.importorskip("tensorboard", reason="tensorboard is an extra: pip install -e \".[tensorboard]\"")


def test_tensorboard_finds_the_loss_terms_of_every_run_under_the_project_folder(tmp_path, data_and_teacher):
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer

    root, teacher = data_and_teacher
    args = common(root, tmp_path, "kd", "DISTILLER.TYPE", "KD", "DISTILLER.TEACHER", "resnet8",
                  "DISTILLER.TEACHER_WEIGHTS", teacher)
    assert load_tool("train").main(args) == 0
    runs = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "cli"))  # what --logdir output/cli reads
    runs.Reload()
    # tensorboard's server-side reader keeps scalar summaries as "tensors"
    tags = set(runs.GetAccumulator(os.path.join("kd", "train.events")).Tags()["tensors"])
    assert {"loss_terms/loss_ce", "loss_terms/loss_kd", "test_acc", "lr"} <= set(tags)
