"""Teacher loading: where the weights come from, which checkpoint files load (real mdistiller /
RepDistiller layouts) or are refused, and the one-line messages for what is missing."""
import argparse
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch

from mdistiller.config import load_cfg
from mdistiller.engine.checkpoint import load_weights
from mdistiller.errors import CheckpointError, ConfigError
from mdistiller.models import build_teacher, cifar_model_dict, create_model, load_teacher
from mdistiller.models.teacher import vanilla_config

TEACHERS = [name for name, (_, path) in cifar_model_dict.items() if path]


def _model_and_state(name="resnet8", seed=0):
    torch.manual_seed(seed)
    model = create_model(name, 100)
    # non-trivial BN statistics, so a load that skipped buffers would show
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    return model, OrderedDict((k, v.clone()) for k, v in model.state_dict().items())


def _same_weights(model, state):
    own = model.state_dict()
    return own.keys() == state.keys() and all(torch.equal(own[k], state[k]) for k in own)


def _repdistiller_checkpoint(state):
    return {"epoch": 240, "model": state, "accuracy": np.float64(73.1),
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.0005, "momentum": 0.9, "params": [0, 1]}]},
            "opt": argparse.Namespace(model="resnet8", learning_rate=0.05, lr_decay_epochs=[150, 180, 210])}


def _cfg(teacher, weights="", dataset="cifar100"):
    return load_cfg(opts=["DISTILLER.TEACHER", teacher, "DISTILLER.TEACHER_WEIGHTS", weights, "DATASET.TYPE", dataset])


def test_repdistiller_checkpoint_with_numpy_and_namespace_loads(tmp_path):
    model, state = _model_and_state()
    path = tmp_path / "ckpt_epoch_240.pth"
    torch.save(_repdistiller_checkpoint(state), path)
    teacher = build_teacher("resnet8", weights_path=str(path))
    assert _same_weights(teacher, state)
    assert not teacher.training


def test_checkpoint_pickled_under_numpy_1_loads(tmp_path):
    """Published checkpoints were written with numpy 1.x, which names its scalar reconstructor
    `numpy.core.multiarray.scalar`; numpy 2 calls it `numpy._core...`. Rewrite a file to the old
    name and load it."""
    _, state = _model_and_state()
    new, old = tmp_path / "new.pth", tmp_path / "old.pth"
    torch.save(_repdistiller_checkpoint(state), new)
    with zipfile.ZipFile(new) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item.endswith("data.pkl"):
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
                assert b"numpy.core.multiarray\nscalar" in data
            dst.writestr(item, data)
    assert _same_weights(build_teacher("resnet8", weights_path=str(old)), state)


class Payload:
    """Stands for anything a checkpoint should not carry (unpickling it would run code)."""


def test_checkpoint_with_arbitrary_pickled_object_is_refused(tmp_path):
    _, state = _model_and_state()
    path = tmp_path / "evil.pth"
    torch.save({"model": state, "extra": Payload()}, path)
    with pytest.raises(CheckpointError) as err:
        build_teacher("resnet8", weights_path=str(path))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "Payload" in msg and "not safe to load" in msg


@pytest.mark.parametrize("layout", ["bare", "state_dict", "model"])
def test_dataparallel_module_prefix_is_stripped(tmp_path, layout):
    _, state = _model_and_state(seed=1)
    prefixed = OrderedDict((f"module.{k}", v) for k, v in state.items())
    payload = {"bare": prefixed, "state_dict": {"state_dict": prefixed}, "model": {"model": prefixed}}[layout]
    path = tmp_path / "ddp.pth"
    torch.save(payload, path)
    assert _same_weights(build_teacher("resnet8", weights_path=str(path)), state)


def test_zoo_default_path_is_resolved_from_the_working_directory(tmp_path, monkeypatch):
    _, state = _model_and_state("resnet56")
    default = tmp_path / cifar_model_dict["resnet56"][1]
    default.parent.mkdir(parents=True)
    torch.save(_repdistiller_checkpoint(state), default)
    monkeypatch.chdir(tmp_path)
    teacher = load_teacher(_cfg("resnet56"))
    assert _same_weights(teacher, state) and not teacher.training


def test_teacher_weights_override_wins_over_the_default(tmp_path, monkeypatch):
    _, default_state = _model_and_state("resnet56", seed=1)
    _, own_state = _model_and_state("resnet56", seed=2)
    default = tmp_path / cifar_model_dict["resnet56"][1]
    default.parent.mkdir(parents=True)
    torch.save({"model": default_state}, default)
    torch.save({"model": own_state}, tmp_path / "student_best")
    monkeypatch.chdir(tmp_path)
    assert _same_weights(load_teacher(_cfg("resnet56", weights="student_best")), own_state)


def test_missing_teacher_file_says_where_to_get_or_how_to_train_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError) as err:
        load_teacher(_cfg("resnet32x4"))
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path / "download_ckpts/cifar_teachers/resnet32x4_vanilla/ckpt_epoch_240.pth") in msg
    assert "`mdistiller-fetch-teachers`" in msg and "python tools/fetch_teachers.py" in msg
    assert "python tools/train.py --cfg configs/cifar100/vanilla/resnet32x4.yaml" in msg
    assert "DISTILLER.TEACHER_WEIGHTS output/cifar100_teachers/resnet32x4_vanilla/student_best" in msg


def test_missing_override_file_names_the_config_key(tmp_path):
    with pytest.raises(CheckpointError, match="DISTILLER.TEACHER_WEIGHTS is '.*nope.pth', which does not exist"):
        load_teacher(_cfg("resnet56", weights=str(tmp_path / "nope.pth")))


def test_architecture_without_default_checkpoint_needs_teacher_weights():
    with pytest.raises(ConfigError) as err:
        load_teacher(_cfg("resnet20"))
    msg = str(err.value)
    assert "\n" not in msg and "resnet20" in msg and "DISTILLER.TEACHER_WEIGHTS" in msg
    assert "DISTILLER.TYPE NONE DISTILLER.STUDENT resnet20" in msg


def test_unknown_teacher_name_names_the_teacher_key():
    with pytest.raises(ConfigError, match="config key DISTILLER.TEACHER is 'resnet57'"):
        load_teacher(_cfg("resnet57"))


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    _, state = _model_and_state("resnet8")
    path = tmp_path / "r8.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match="does not fit ResNet.*check the architecture"):
        build_teacher("resnet14", weights_path=str(path))


def test_imagenet_teacher_defaults_to_torchvision_weights(monkeypatch):
    from torchvision.models._api import WeightsEnum

    reference = create_model("ResNet18", 1000, "imagenet")
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, *a, **k: reference.state_dict())
    teacher = load_teacher(_cfg("ResNet18", dataset="imagenet"))
    assert _same_weights(teacher, reference.state_dict()) and not teacher.training


@pytest.mark.parametrize("name", TEACHERS)
def test_vanilla_teacher_config_trains_that_teacher_with_mdistiller_recipe(name):
    cfg = load_cfg(vanilla_config(name))
    assert cfg.DISTILLER.TYPE == "NONE"
    assert cfg.DISTILLER.STUDENT == cfg.DISTILLER.TEACHER == name
    assert cfg.DATASET.TYPE == "cifar100"
    s = cfg.SOLVER
    assert (s.TYPE, s.LR, s.EPOCHS, list(s.LR_DECAY_STAGES), s.LR_DECAY_RATE, s.WEIGHT_DECAY, s.MOMENTUM,
            s.BATCH_SIZE) == ("SGD", 0.05, 240, [150, 180, 210], 0.1, 0.0005, 0.9, 64)
    assert (cfg.EXPERIMENT.PROJECT, cfg.EXPERIMENT.NAME) == ("cifar100_teachers", f"{name}_vanilla")


def test_load_weights_accepts_a_student_best_style_file(tmp_path):
    model, state = _model_and_state("wrn_16_1")
    path = tmp_path / "student_best"
    torch.save({"model": state}, path)
    fresh = create_model("wrn_16_1", 100)
    assert _same_weights(load_weights(fresh, path), state)


def test_teacher_weights_may_be_a_full_run_checkpoint(tmp_path):
    """A run's `best`/`latest` holds the whole distiller (student.* and teacher.* keys): the
    student part is what a new teacher should be."""
    _, student_state = _model_and_state("resnet8", seed=3)
    _, other_state = _model_and_state("resnet8", seed=4)
    full = {f"student.{k}": v for k, v in student_state.items()}
    full.update({f"teacher.{k}": v for k, v in other_state.items()})
    torch.save({"epoch": 3, "model": full, "optimizer": {}, "best_acc": 12.5}, tmp_path / "best")
    assert _same_weights(load_teacher(_cfg("resnet8", weights=str(tmp_path / "best"))), student_state)
