"""A config is data (README "Configs and run folders are data"): a model name resolves to a model
class or a model-building function, decided before anything is called, and a run folder's
plug-ins are imported only when the user's command line asks. Every case uses real hostile
files: a module that leaves a marker when imported or called, a pickle that creates a file when
unpickled, a victim file outside any run folder whose bytes must not change."""
import os
import subprocess
import sys

import pytest
import torch
import yaml

from helpers.hostile import markers, write_hostile_module, write_hostile_pickle, write_reexporting_module
from helpers.tiny import REPO, subprocess_env, write_colour_folder
from helpers.tools import load_tool
from mdistiller import plugins
from mdistiller.config import dump_cfg, load_cfg
from mdistiller.errors import ConfigError
from mdistiller.models import build_teacher, create_model
from mdistiller.runtime.checkpoint_io import save_atomic

ACCEPTED = ("a model name is a zoo name, timm:<name>, torchvision:<name>, or package.module:callable naming an "
            "nn.Module class or a model-building function of your own module")
VICTIM = "keep me"


class Hostile:
    """tmp_path/markers (where hostile code marks), victim.txt, and hub/hubconf.py (hostile)."""

    def __init__(self, root):
        self.root = root
        self.markers = root / "markers"
        self.markers.mkdir()
        self.victim = root / "victim.txt"
        self.victim.write_text(VICTIM)
        self.hub = root / "hub"
        write_hostile_module(self.hub, "hubconf", self.markers)
        self.pickle = write_hostile_pickle(root / "evil.pth", self.markers / "unpickled")

    def assert_untouched(self):
        assert markers(self.markers) == [], "hostile code ran"
        assert self.victim.read_text() == VICTIM, "a file outside the run folders was touched"


@pytest.fixture
def hostile(tmp_path):
    return Hostile(tmp_path)


@pytest.fixture
def importable(tmp_path, monkeypatch):
    """A folder on sys.path for the test's own modules; they and any plug-in the test imports are
    forgotten afterwards."""
    folder = tmp_path / "importable"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(plugins, "_imported", [], raising=False)
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        del sys.modules[name]


def refused(call, pattern):
    """The one-line ConfigError that `call()` raises, matched against `pattern`."""
    with pytest.raises(ConfigError, match=pattern) as err:
        call()
    assert "\n" not in str(err.value)
    return str(err.value)


# ---------------------------------------------------------------- names that are not models
HOSTILE_NAMES = {
    "logging:basicConfig": lambda h: {"filename": str(h.victim), "filemode": "w", "force": True},
    "torch.hub:load": lambda h: {"repo_or_dir": str(h.hub), "model": "build", "source": "local", "pretrained": True},
    "torch:hub.load": lambda h: {"repo_or_dir": str(h.hub), "model": "build", "source": "local"},
    "os:system": lambda h: {"command": f"touch {h.markers / 'system'}"},
    "builtins:eval": lambda h: {"source": f"open({str(h.markers / 'eval')!r}, 'w')"},
    "builtins:exec": lambda h: {"source": f"open({str(h.markers / 'exec')!r}, 'w')"},
    "subprocess:run": lambda h: {"args": ["touch", str(h.markers / "run")]},
    "torch:load": lambda h: {"f": str(h.pickle), "weights_only": False},
    "numpy:load": lambda h: {"file": str(h.pickle), "allow_pickle": True},
}


@pytest.mark.parametrize("name", sorted(HOSTILE_NAMES))
def test_a_name_that_is_not_a_model_is_refused_before_anything_runs(hostile, name):
    kwargs = HOSTILE_NAMES[name](hostile)
    message = refused(lambda: create_model(name, 5, kwargs=kwargs), rf"^config key DISTILLER.STUDENT is '{name}', ")
    assert message.endswith(ACCEPTED + " (on PYTHONPATH, or in PLUGINS / --plugin)")
    refused(lambda: build_teacher(name, 5, "imagefolder", "", kwargs=kwargs, key="DISTILLER.TEACHER"),
            rf"^config key DISTILLER.TEACHER is '{name}', ")
    hostile.assert_untouched()


def test_the_standard_library_and_torch_hub_are_refused_before_import():
    assert "antigravity" not in sys.modules  # importing it would open a web browser
    refused(lambda: create_model("antigravity:fly", 5), r"names the Python standard library \(antigravity\)")
    assert "antigravity" not in sys.modules
    refused(lambda: create_model("torch.hub:load", 5), r"torch.hub fetches or runs code from elsewhere")


@pytest.mark.parametrize("attr, kwargs, why", [
    ("basicConfig", "victim", r"a function of logging \(the Python standard library\)"),
    ("system", {}, r"a builtin_function_or_method, neither a model class nor a Python function"),
    ("run", {"args": ["true"]}, r"a function of subprocess \(the Python standard library\)"),
    ("touch", "victim", r"a partial, neither a model class nor a Python function"),
    ("Settings", {}, r"a class \(reexports.Settings\) that is not an nn.Module"),
])
def test_a_user_module_reexporting_a_function_does_not_make_it_a_model(hostile, importable, attr, kwargs, why):
    module = write_reexporting_module(importable)
    if kwargs == "victim":
        kwargs = {"filename": str(hostile.victim), "filemode": "w", "force": True} if attr == "basicConfig" else {
            "file": str(hostile.victim)}
    refused(lambda: create_model(f"{module}:{attr}", 5, kwargs=kwargs), why)
    hostile.assert_untouched()


def test_functions_of_installed_packages_need_their_module_in_plugins(importable, tmp_path, monkeypatch):
    """A function in site-packages is a library's, not a model builder, unless the user lists
    its module as a plug-in; model classes from anywhere and the user's own functions build."""
    installed = tmp_path / "venv" / "lib" / "site-packages"
    installed.mkdir(parents=True)
    (installed / "their_nets.py").write_text("import torch.nn as nn\n\ndef build(num_classes):\n"
                                             "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))\n")
    monkeypatch.syspath_prepend(str(installed))
    (importable / "own_nets_for_trust.py").write_text("import torch.nn as nn\n\ndef build(num_classes, width=4):\n"
                                           "    return nn.Sequential(nn.Conv2d(3, width, 3), nn.AdaptiveAvgPool2d(1),\n"
                                           "                         nn.Flatten(), nn.Linear(width, num_classes))\n")
    refused(lambda: create_model("their_nets:build", 5), r"a function of their_nets \(an installed package, "
                                                          r"their_nets, not your own code\)")
    plugins.load_plugins(["their_nets"])
    assert create_model("their_nets:build", 5).model(torch.zeros(1, 3, 32, 32)).shape == (1, 5)
    assert create_model("own_nets_for_trust:build", 5, kwargs={"width": 2}).model[0].out_channels == 2
    assert create_model("torchvision.models:resnet18", 5).model.fc.out_features == 5  # a library's model builder
    refused(lambda: create_model("torchvision.models:get_model", 5), r"a function of torchvision.models._api")
    refused(lambda: create_model("mdistiller.models.cifar.resnet:resnet8", 5), r"this project's code: zoo models go "
                                                                               r"by their zoo names")


# ---------------------------------------------------------------- the TEACHER_WEIGHTS exemption
def test_pretrained_lifts_teacher_weights_only_for_published_library_weights(importable, monkeypatch, tmp_path):
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):  # no download can happen
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (importable / "own.py").write_text("import torch.nn as nn\n\ndef build(num_classes, pretrained=False):\n"
                                       "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))\n")
    refused(lambda: build_teacher("own:build", 5, "imagefolder", "", kwargs={"pretrained": True}),
            r"^teacher own:build needs trained weights \(DISTILLER.TEACHER_KWARGS asks for published weights, which "
            r"only timm: and torchvision: models load\): set DISTILLER.TEACHER_WEIGHTS")
    pytest.importorskip("timm")
    refused(lambda: build_teacher("timm:coatnet_0_224", 5, "imagefolder", "", kwargs={"pretrained": True}),
            r"^teacher timm:coatnet_0_224 needs trained weights \(timm publishes no weights for coatnet_0_224")
    refused(lambda: build_teacher("timm:resnet10t", 5, "imagefolder", "", kwargs={"pretrained": True}),
            r"\(timm's published resnet10t classifies 1000 classes, the dataset has 5: its classifier would start "
            r"random\)")


@pytest.mark.parametrize("kwargs, key", [
    ({"checkpoint_path": "PICKLE"}, "checkpoint_path"),
    ({"pretrained": True, "pretrained_cfg_overlay": {"file": "PICKLE"}}, "pretrained_cfg_overlay"),
    ({"pretrained_cfg": {"file": "PICKLE"}}, "pretrained_cfg"),
    ({"cache_dir": "VICTIM"}, "cache_dir"),
])
def test_timm_arguments_that_load_files_are_refused(hostile, kwargs, key):
    pytest.importorskip("timm")
    kwargs = {k: ({"file": str(hostile.pickle)} if isinstance(v, dict) else
                  str(hostile.pickle) if v == "PICKLE" else str(hostile.root) if v == "VICTIM" else v)
              for k, v in kwargs.items()}
    refused(lambda: create_model("timm:resnet10t", 5, kwargs=kwargs),
            rf"^DISTILLER.STUDENT_KWARGS sets {key}, with which timm would read or write files itself, outside the "
            r"safe checkpoint loader; remove it and give trained weights with DISTILLER.STUDENT_WEIGHTS")
    hostile.assert_untouched()


# ---------------------------------------------------------------- plug-in names
@pytest.mark.parametrize("value", ["../etc", ".rel", "/etc/passwd", "my-kd"])
def test_plugins_must_be_module_paths(tmp_path, value):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"PLUGINS": [value]}))
    refused(lambda: load_cfg(str(path)), rf"^config key PLUGINS \(in {path}\) names '{value}', which is not a module "
                                         r"path; write dotted module names such as my_pkg.my_kd")
    refused(lambda: load_cfg(None, ["PLUGINS", f"[{value}]"]), r"^config key PLUGINS \(--plugin / command line\) names")


# ---------------------------------------------------------------- through the programs
def test_eval_and_feature_shapes_refuse_a_builtin_in_one_line(tmp_path, capsys):
    ckpt = tmp_path / "student_best"
    ckpt.write_bytes(b"not read")
    # refused before the data is looked for: the root does not exist
    assert load_tool("eval").main(["-m", "builtins:dict", "-c", str(ckpt), "-d", "imagefolder", "--root",
                                   str(tmp_path / "nowhere"), "DEVICE", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: -m/--model is 'builtins:dict', which names the Python "
                                                   "standard library (builtins), not a model; " + ACCEPTED)
    assert load_tool("feature_shapes").main(["builtins:dict", "resnet8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: the teacher argument is 'builtins:dict', which names")
    assert load_tool("train").main(["--plugin", ".rel", "DEVICE", "cpu"]) == 2
    assert capsys.readouterr().err.startswith("error: config key PLUGINS (--plugin / command line) names '.rel'")


@pytest.mark.parametrize("role, name, kwargs", [
    pytest.param("STUDENT", "logging:basicConfig", lambda h: {"filename": str(h.victim), "filemode": "w",
                                                              "force": True}, marks=pytest.mark.slow),
    ("TEACHER", "torch.hub:load", lambda h: {"repo_or_dir": str(h.hub), "model": "build", "source": "local",
                                             "pretrained": True}),
])
def test_train_with_a_hostile_config_touches_nothing(hostile, role, name, kwargs):
    """The issue's two configs, through tools/train.py in a real process: refused (the name's one
    line first, then any other problem of the run) before any data is read (DATASET.ROOT does not exist), nothing written outside output/."""
    cfg = {"DEVICE": "cpu", "DATASET": {"TYPE": "imagefolder", "ROOT": str(hostile.root / "no_data")},
           "LOG": {"PREFIX": str(hostile.root / "output")}, "DISTILLER": {"TYPE": "KD", "STUDENT": "resnet8",
                                                                       "TEACHER": "resnet8", role: name,
                                                                       f"{role}_KWARGS": kwargs(hostile)}}
    path = hostile.root / "hostile.yaml"
    path.write_text(yaml.safe_dump(cfg))
    done = subprocess.run([sys.executable, os.path.join(REPO, "tools", "train.py"), "--cfg", str(path)],
                          cwd=str(hostile.root), env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()  # the up-front checks report every problem, one line each
    assert all(line.startswith("error: ") for line in lines), done.stderr
    assert lines[0].startswith(f"error: config key DISTILLER.{role} is '{name}', ")
    hostile.assert_untouched()
    assert sorted(os.listdir(hostile.root)) == ["evil.pth", "hostile.yaml", "hub", "markers", "victim.txt"]


# ---------------------------------------------------------------- run folders: analyze and eval
def write_run(folder, data, student_name="resnet8", plugins_listed=(), **settings):
    """A finished-looking run folder: config.yaml (with `plugins_listed` as PLUGINS, written as
    text so that nothing is imported here), student_best, latest with a resnet8 teacher."""
    opts = ["DEVICE", "cpu", "DATASET.TYPE", "imagefolder", "DATASET.ROOT", str(data), "DISTILLER.TYPE", "KD",
            "DISTILLER.STUDENT", student_name, "DISTILLER.TEACHER", "resnet8", "DATASET.TEST.BATCH_SIZE", "6"]
    for key, value in settings.items():
        opts += [key.replace("__", "."), value]
    cfg = load_cfg(None, opts)
    saved = yaml.safe_load(dump_cfg(cfg))
    saved["PLUGINS"] = list(plugins_listed)
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(saved))
    torch.manual_seed(0)
    student = create_model(student_name, 3, "imagefolder", kwargs=dict(cfg.DISTILLER.STUDENT_KWARGS),
                           input_size=(16, 16))
    teacher = create_model("resnet8", 3, "imagefolder")
    save_atomic({"model": student.state_dict()}, str(folder / "student_best"))
    full = {**{f"student.{k}": v for k, v in student.state_dict().items()},
            **{f"teacher.{k}": v for k, v in teacher.state_dict().items()}}
    save_atomic({"model": full, "epoch": 1}, str(folder / "latest"))
    return folder


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory):
    """A run folder whose config.yaml lists the plug-in `hostile_probe`, which sits in the folder."""
    root = tmp_path_factory.mktemp("shared_run")
    write_colour_folder(root / "data", ("ant", "bee", "cat"))
    run = write_run(root / "run", root / "data", plugins_listed=["hostile_probe"])
    return run


def test_analyze_imports_a_run_folders_plugins_only_when_asked(shared_run, tmp_path, importable, monkeypatch, capsys):
    """Run from the folder that holds the plug-in, where an import would find it."""
    marks = tmp_path / "marks"
    marks.mkdir()
    write_hostile_module(shared_run, "hostile_probe", marks)
    monkeypatch.chdir(shared_run)
    analyze = load_tool("analyze").main
    args = ["-c", "student_best", "--quiet", "--tsne-samples", "0", "-o", str(tmp_path / "out")]
    assert analyze(args) == 2
    err = capsys.readouterr().err
    assert err == (f"error: the run in {shared_run} was trained with plug-in module(s) hostile_probe (PLUGINS in its "
                   "config.yaml), and importing them runs their code; if you trust them, pass --plugin "
                   "hostile_probe (or --allow-plugins)\n")
    assert markers(marks) == [] and not (tmp_path / "out").exists()
    assert load_tool("eval").main(["-m", "resnet8", "-c", "student_best", "-d", "imagefolder", "--root",
                                   str(shared_run.parent / "data"), "DEVICE", "cpu", "LOG.QUIET", "True"]) == 0
    assert markers(marks) == []  # eval never reads the run's config.yaml
    assert analyze(args + ["--allow-plugins"]) == 0  # the user's explicit consent
    assert markers(marks) == ["import-hostile_probe"]


def test_analyze_builds_the_runs_models_with_their_kwargs(tmp_path, capsys):
    """The README's ViT-style run: the student needs DISTILLER.STUDENT_KWARGS to have the shapes
    of its checkpoint; analyze reads them from the run (and names the real keys in errors)."""
    pytest.importorskip("timm")
    write_colour_folder(tmp_path / "data", ("ant", "bee", "cat"))
    vit = "timm:vit_tiny_patch16_224"
    run = write_run(tmp_path / "vit", tmp_path / "data", vit, DATASET__IMAGE_SIZE="16",
                    DISTILLER__STUDENT_KWARGS="{img_size: 16, patch_size: 4, depth: 1}")
    analyze = load_tool("analyze").main
    args = ["-c", str(run / "student_best"), "--quiet", "--tsne-samples", "0"]
    assert analyze(args) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith(f"{vit} vs teacher resnet8 on imagefolder test (12 images)")
    assert analyze(args + ["-m", "timm:resnet10t", "DISTILLER.STUDENT_KWARGS", "{nope: 1}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: -m/--model is timm:resnet10t, whose constructor refuses DISTILLER.STUDENT_KWARGS "
                          "{'nope': 1}") and "_KWARGS" not in err.replace("DISTILLER.STUDENT_KWARGS", "")
