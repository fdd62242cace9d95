"""DATASET.VIEWS, DATASET.INDICES and SOLVER.UPDATE: the three settings mdistiller's
SOLVER.TRAINER named together, now separate keys; the old names resolve to them at load time,
train as they did, and resume runs started before the split."""
import glob
import os

import pytest
import yaml

from mdistiller.config import dump_cfg, load_cfg
from mdistiller.distillers import SLD
from mdistiller.distillers.inputs import declared_views, distiller_classes, input_views, needs_index
from mdistiller.engine import trainer as trainer_module
from mdistiller.engine.build import train
from mdistiller.engine.run_folder import RunFiles, check_start, config_changes
from mdistiller.errors import ConfigError
from mdistiller.models import create_model
from helpers.tiny import write_colour_folder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _is_training_config(path):
    """Benchmark specs (tools/benchmark.py, a `methods:` list) also live under configs/."""
    with open(path) as f:
        return "methods" not in (yaml.safe_load(f) or {})


SHIPPED = sorted(p for p in glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True)
                 if _is_training_config(p))
OFFICIAL = sorted(glob.glob(os.path.join(REPO, "tests", "fixtures", "official_configs", "*.yaml")))


@pytest.mark.parametrize("trainer, views, indices, update", [
    ("base", "fewest", "auto", "sgd"), ("ours", 2, "auto", "sgd"), ("aug", 2, "auto", "sgd"),
    ("crd", "fewest", True, "sgd"), ("dot", "fewest", "auto", "dot"), ("", "auto", "auto", "sgd"),
])
def test_trainer_names_resolve_to_the_new_keys_at_load(trainer, views, indices, update):
    cfg = load_cfg(None, ["SOLVER.TRAINER", trainer] if trainer else [])
    assert (cfg.DATASET.VIEWS, cfg.DATASET.INDICES, cfg.SOLVER.UPDATE, cfg.SOLVER.TRAINER) == \
        (views, indices, update, "")
    assert load_cfg(None, ["SOLVER.TRAINER", trainer, "DATASET.VIEWS", views] if trainer else []) == cfg


def test_a_config_without_trainer_gets_views_auto_and_round_trips(tmp_path):
    cfg = load_cfg(None, ["DISTILLER.TYPE", "SLD", "SOLVER.UPDATE", "dot"])
    assert (cfg.DATASET.VIEWS, cfg.DATASET.INDICES, cfg.SOLVER.TRAINER) == ("auto", "auto", "")
    assert (input_views(cfg), needs_index(cfg)) == (2, False)  # SLD's own choice: weak + strong
    path = tmp_path / "config.yaml"
    path.write_text(dump_cfg(cfg))
    assert load_cfg(str(path)) == cfg


@pytest.mark.parametrize("opts, message", [
    (["SOLVER.TRAINER", "ours", "DATASET.VIEWS", 1],
     "config keys SOLVER.TRAINER ours and DATASET.VIEWS 1 contradict each other (the trainer name means "
     "DATASET.VIEWS 2); drop SOLVER.TRAINER"),
    (["SOLVER.TRAINER", "base", "DATASET.VIEWS", 2],
     "config keys SOLVER.TRAINER base and DATASET.VIEWS 2 contradict each other (the trainer name means "
     "DATASET.VIEWS fewest); drop SOLVER.TRAINER"),
    (["SOLVER.TRAINER", "crd", "DATASET.INDICES", False],
     "config keys SOLVER.TRAINER crd and DATASET.INDICES False contradict each other (the trainer name means "
     "DATASET.INDICES True); drop SOLVER.TRAINER"),
    (["SOLVER.TRAINER", "fancy"],
     "config key SOLVER.TRAINER is 'fancy'; choose one of base, ours, aug, crd, dot, crd_dot, or set "
     "DATASET.VIEWS / DATASET.INDICES / SOLVER.UPDATE instead"),
    (["DATASET.VIEWS", 3], "config key DATASET.VIEWS is 3; use auto, fewest, 1 or 2"),
    (["DATASET.VIEWS", "two"], "config key DATASET.VIEWS expects auto or fewest or a int, got str 'two'"),
    (["SOLVER.UPDATE", "adam"], "config key SOLVER.UPDATE is 'adam'; choose one of sgd, dot"),
])
def test_contradictions_and_bad_values_are_one_line_errors(opts, message):
    with pytest.raises(ConfigError) as err:
        load_cfg(None, opts)
    assert str(err.value) == message


def test_two_views_for_a_one_view_distiller_is_refused():
    cfg = load_cfg(None, ["DISTILLER.TYPE", "NONE", "DATASET.VIEWS", 2])
    with pytest.raises(ConfigError, match=r"^config key DATASET.VIEWS is 2 \(SOLVER.TRAINER ours sets 2\) but "
                                          r"distiller NONE takes 1 view\(s\) only; set DATASET.VIEWS auto and "
                                          r"leave SOLVER.TRAINER out$"):
        input_views(cfg)
    with pytest.raises(ConfigError, match=r"^config key DATASET.VIEWS is 1 but distiller MLKD takes 2 view"):
        input_views(load_cfg(None, ["DISTILLER.TYPE", "MLKD", "DATASET.VIEWS", 1]))


def _before_the_split(path):
    """(views, indices, update) as the trainer chose them from SOLVER.TRAINER before the split."""
    cfg = load_cfg(path)
    with open(path) as f:
        trainer = (yaml.safe_load(f).get("SOLVER") or {}).get("TRAINER", "base")
    classes = distiller_classes(cfg)
    supported = set.intersection(*(set(declared_views(c) or (1, 2)) for c in classes))
    views = 2 if trainer in ("ours", "aug") else min(supported)
    indices = trainer == "crd" or any(getattr(c, "needs_index", False) for c in classes)
    return views, indices, "dot" if trainer == "dot" else "sgd"


@pytest.mark.parametrize("path", SHIPPED + OFFICIAL, ids=lambda p: os.path.relpath(p, REPO))
def test_every_shipped_and_official_config_trains_with_the_same_inputs_and_update(path):
    cfg = load_cfg(path)
    try:
        distiller_classes(cfg)
    except ConfigError:  # a fork's method this project does not ship (e.g. the LS repository's DKD_aug)
        assert cfg.DATASET.VIEWS in ("auto", "fewest", 2)
        return
    assert (input_views(cfg), needs_index(cfg), cfg.SOLVER.UPDATE) == _before_the_split(path)


def _old_style(cfg, trainer):
    """`cfg`'s config.yaml as a run started before the split wrote it: SOLVER.TRAINER, no new keys."""
    saved = yaml.safe_load(dump_cfg(cfg))
    saved["SOLVER"]["TRAINER"] = trainer
    for section, key in (("DATASET", "VIEWS"), ("DATASET", "INDICES"), ("SOLVER", "UPDATE")):
        del saved[section][key]
    return saved


@pytest.mark.parametrize("trainer, method, opts, changed", [
    ("ours", "SLD", ["SOLVER.TRAINER", "ours"], []),
    ("ours", "SLD", [], []),  # auto gives SLD its two views too
    ("base", "KD", [], []),
    ("dot", "KD", ["SOLVER.UPDATE", "dot"], []),
    ("crd", "CRD", [], []),
    ("base", "SLD", [], [("DATASET.VIEWS", "fewest", "auto")]),  # one view then, two now
    ("ours", "SLD", ["SOLVER.UPDATE", "dot"], [("SOLVER.UPDATE", "sgd", "dot")]),
])
def test_resume_reads_an_old_trainer_as_the_keys_it_stands_for(tmp_path, trainer, method, opts, changed):
    cfg = load_cfg(None, ["DISTILLER.TYPE", method, "LOG.PREFIX", str(tmp_path), *opts])
    saved = _old_style(load_cfg(None, ["DISTILLER.TYPE", method, "SOLVER.TRAINER", trainer]), trainer)
    assert config_changes(saved, cfg) == changed
    files = RunFiles(os.path.join(str(tmp_path), cfg.EXPERIMENT.PROJECT, cfg.EXPERIMENT.TAG))
    os.makedirs(files.folder)
    open(files.latest, "w").close()
    with open(files.config, "w") as f:
        yaml.safe_dump(saved, f)
    problem = check_start(files, resume=True, overwrite=False, cfg=cfg)
    assert (problem is None) == (not changed), problem


def test_sld_with_dot_update_trains_on_two_views(tmp_path, monkeypatch):
    """SOLVER.UPDATE dot (no SOLVER.TRAINER): every SLD forward gets the weak and the strong view,
    and every step is DOT's two-pass update; three real steps of resnet8 on image-folder data."""
    write_colour_folder(tmp_path / "data", ("ant", "bee", "cat"))
    teacher = tmp_path / "teacher.pth"
    import torch
    torch.manual_seed(0)
    torch.save({"model": create_model("resnet8", 3, "cifar100").state_dict()}, teacher)
    forwards, updates = [], []
    real_forward, real_update = SLD.forward_train, trainer_module.TRAINER_UPDATES["dot"]

    def forward_train(self, *args, **kwargs):
        forwards.append(sorted(k for k in kwargs if k.startswith("image")))
        return real_forward(self, *args, **kwargs)

    def update(run, losses):
        updates.append(type(run.optimizer).__name__)
        return real_update(run, losses)

    monkeypatch.setattr(SLD, "forward_train", forward_train)
    monkeypatch.setitem(trainer_module.TRAINER_UPDATES, "dot", update)
    cfg = load_cfg(None, ["DEVICE", "cpu", "DATASET.TYPE", "imagefolder", "DATASET.ROOT", str(tmp_path / "data"),
                          "DATASET.NUM_WORKERS", 0, "SOLVER.BATCH_SIZE", 8, "SOLVER.EPOCHS", 1, "SOLVER.LR", 0.01,
                          "LOG.PREFIX", str(tmp_path / "out"), "LOG.QUIET", True, "DISTILLER.TYPE", "SLD",
                          "SLD.GAMMA", 0, "DISTILLER.STUDENT", "resnet8", "DISTILLER.TEACHER", "resnet8",
                          "DISTILLER.TEACHER_WEIGHTS", str(teacher), "SOLVER.UPDATE", "dot"])
    assert train(cfg) >= 0
    assert forwards == [["image_strong", "image_weak"]] * 3
    assert updates == ["DistillationOrientedTrainer"] * 3
