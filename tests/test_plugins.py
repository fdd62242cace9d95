"""Plug-ins: a distiller in a module outside the package, with its own config section
(registry `register(NAME, cfg_node=...)`), imported through the config's PLUGINS or `--plugin`
(mdistiller/plugins.py). The plug-in is the README's, extracted from README.md, and it trains
through the real tools from a folder outside the package: alone, stacked onto SLD, paired with
SLD and the vanilla student, and resumed from its saved config."""
import os
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
import yaml

from mdistiller import config
from mdistiller.config import load_cfg
from mdistiller.distillers import Distiller, build_distiller, distiller_dict, is_legacy, register
from mdistiller.distillers import _base
from mdistiller.distillers.kd import KD
from mdistiller.errors import ConfigError
from mdistiller.models import create_model
from helpers.tiny import REPO, subprocess_env, write_colour_folder

DEFAULTS = {"CE_WEIGHT": 1.0, "MSE_WEIGHT": 0.5, "WARMUP": 0}  # the README plug-in's section


def readme_block(language):
    """The first ```language block of the README's plug-in section."""
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    section = text[text.index("### Plug-ins"):]
    section = section[:section.index("\n### ", 1)]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A user's folder outside the package: my_kd.py (the README's), an image folder, a random
    resnet8 teacher, and the settings every run here shares (as a config mapping)."""
    root = tmp_path_factory.mktemp("user_project")
    (root / "my_kd.py").write_text(readme_block("python"))
    write_colour_folder(root / "data", ("ant", "bee", "cat"))
    torch.manual_seed(0)
    torch.save({"model": create_model("resnet8", 3).state_dict()}, root / "teacher.pth")
    common = {"DEVICE": "cpu", "DATASET": {"TYPE": "imagefolder", "ROOT": str(root / "data"), "NUM_WORKERS": 0},
              "SOLVER": {"BATCH_SIZE": 8, "EPOCHS": 1},
              "LOG": {"QUIET": True, "PREFIX": str(root / "out")},
              "DISTILLER": {"TEACHER": "resnet8", "STUDENT": "resnet8", "TEACHER_WEIGHTS": str(root / "teacher.pth")}}
    return root, common


def write_cfg(root, name, common, **sections):
    """<root>/<name>.yaml: `common` with `sections` merged in (one level deep)."""
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in common.items()}
    for key, value in sections.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    data["EXPERIMENT"] = {"PROJECT": "p", "NAME": name}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def run_tool(tool, root, *args):
    """`python <repo>/tools/<tool>.py ARGS` in the user's folder, which is not on PYTHONPATH."""
    env = subprocess_env()
    assert str(root) not in env["PYTHONPATH"]
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", f"{tool}.py"), *args], cwd=str(root),
                          env=env, capture_output=True, text=True, timeout=600)


def saved_cfg(root, name):
    with open(root / "out" / "p" / name / "config.yaml") as f:
        return yaml.safe_load(f)


def event_tags(root, name):
    folder = root / "out" / "p" / name / "train.events"
    return b"".join((folder / f).read_bytes() for f in os.listdir(folder))


@pytest.fixture
def registries():
    """Restore the distiller and config-section registries (and the module cache) after a test
    that registers plug-ins in this process."""
    distillers, sections, modules, path = dict(distiller_dict), dict(config.PLUGIN_SECTIONS), set(sys.modules), list(sys.path)
    yield
    distiller_dict.clear()
    distiller_dict.update(distillers)
    config.PLUGIN_SECTIONS.clear()
    config.PLUGIN_SECTIONS.update(sections)
    for name in set(sys.modules) - modules:
        del sys.modules[name]
    sys.path[:] = path


# ---------------------------------------------------------------- through the real tools
def test_plugins_in_yaml_trains_then_resumes_from_the_saved_config(project):
    root, common = project
    path = write_cfg(root, "alone", common, PLUGINS=["my_kd"], DISTILLER={"TYPE": "LOGIT_MSE"})
    done = run_tool("train", root, "--cfg", path)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = saved_cfg(root, "alone")
    assert saved["PLUGINS"] == ["my_kd"] and saved["LOGIT_MSE"] == DEFAULTS  # the section's defaults apply
    assert b"loss_mse" in event_tags(root, "alone")
    # the saved config imports the plug-in again: resume from it, one more epoch
    resumed = run_tool("train", root, "--cfg", str(root / "out" / "p" / "alone" / "config.yaml"), "--resume",
                       "SOLVER.EPOCHS", "2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "epoch: 2" in (root / "out" / "p" / "alone" / "worklog.txt").read_text()


def test_plugin_flag_stacks_the_plugin_onto_sld(project):
    """The README's YAML (SLD + DISTILLER.STACK [LOGIT_MSE]) without its PLUGINS line, the
    plug-in given with --plugin after the overrides; the saved config lists it."""
    root, common = project
    readme = yaml.safe_load(readme_block("yaml"))
    assert readme.pop("PLUGINS") == ["my_kd"]
    path = write_cfg(root, "stacked", common, DISTILLER={"TYPE": readme["DISTILLER"]["TYPE"],
                                                         "STACK": readme["DISTILLER"]["STACK"]},
                     DATASET={"VIEWS": readme["DATASET"]["VIEWS"]}, LOGIT_MSE=readme["LOGIT_MSE"])
    done = run_tool("train", root, "--cfg", path, "SOLVER.EPOCHS", "1", "--plugin", "my_kd")
    assert done.returncode == 0, done.stderr[-3000:]
    saved = saved_cfg(root, "stacked")
    assert saved["PLUGINS"] == ["my_kd"] and saved["DISTILLER"]["STACK"] == ["LOGIT_MSE"]
    assert saved["LOGIT_MSE"] == {**DEFAULTS, "MSE_WEIGHT": 0.2}
    tags = event_tags(root, "stacked")
    assert b"LOGIT_MSE.loss_mse" in tags and b"SLD.loss_ts" in tags and b"LOGIT_MSE.loss_ce" not in tags


def test_plugin_runs_paired_with_sld_and_the_vanilla_student(project):
    root, common = project
    paths = [write_cfg(root, "vanilla", common, DISTILLER={"TYPE": "NONE"}, SOLVER={"TRAINER": "base"}),
             write_cfg(root, "sld", common, DISTILLER={"TYPE": "SLD"}),
             write_cfg(root, "sld_mse", common, DISTILLER={"TYPE": "SLD", "STACK": ["LOGIT_MSE"]}),
             write_cfg(root, "mse", common, DISTILLER={"TYPE": "LOGIT_MSE"})]
    done = run_tool("benchmark", root, "--cfg", *paths, "--paired", "--plugin", "my_kd", "--project", "paired",
                    "--out", str(root / "paired_tables"), "--no-chart")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[group 1/1]" in done.stdout
    for method in ("SLD", "SLD+LOGIT_MSE", "LOGIT_MSE"):
        assert f"| {method} |" in done.stdout  # a paired difference against the vanilla student
    folders = os.listdir(root / "out" / "paired")
    assert len(folders) == 4
    for folder in folders:
        with open(root / "out" / "paired" / folder / "config.yaml") as f:
            assert yaml.safe_load(f)["PLUGINS"] == ["my_kd"]


def test_a_plugin_that_cannot_be_imported_is_one_line(project, tmp_path):
    root, common = project
    done = run_tool("train", tmp_path, "--cfg", write_cfg(root, "missing", common, DISTILLER={"TYPE": "LOGIT_MSE"}),
                    "--plugin", "my_kd")  # run from another folder: my_kd.py is not importable there
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: plug-in module my_kd (PLUGINS / --plugin) cannot be imported: no module "
                                   "named 'my_kd'; run from the folder that holds it or add that folder to PYTHONPATH")


def test_a_plugin_on_pythonpath_serves_another_tool(project, tmp_path):
    """--plugin on tools/feature_shapes.py, run elsewhere with the user's folder on PYTHONPATH:
    the plug-in's section exists for the override that follows."""
    root, _ = project
    env = subprocess_env()
    env["PYTHONPATH"] += os.pathsep + str(root)
    done = subprocess.run([sys.executable, os.path.join(REPO, "tools", "feature_shapes.py"), "resnet8", "resnet8",
                           "--plugin", "my_kd", "LOGIT_MSE.MSE_WEIGHT", "0.3"], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "feature distillers with default settings:" in done.stdout, done.stderr


# ---------------------------------------------------------------- in this process
def test_section_defaults_validation_and_the_stacked_loss(project, registries, monkeypatch):
    root, common = project
    monkeypatch.chdir(root)
    cfg = load_cfg(None, ["PLUGINS", "my_kd", "DISTILLER.TYPE", "SLD", "DISTILLER.STACK", "[LOGIT_MSE]",
                          "SOLVER.TRAINER", "ours", "LOGIT_MSE.MSE_WEIGHT", "0.25"])
    assert cfg.PLUGINS == ["my_kd"] and cfg.LOGIT_MSE.WARMUP == 0 and cfg.LOGIT_MSE.MSE_WEIGHT == 0.25
    # unknown keys and wrong types in the plug-in's section: the built-in sections' messages
    with pytest.raises(ConfigError, match=r"^unknown config key LOGIT_MSE.NOPE; keys allowed here: CE_WEIGHT, "
                                          r"MSE_WEIGHT, WARMUP$"):
        load_cfg(None, ["LOGIT_MSE.NOPE", "1"])
    with pytest.raises(ConfigError, match=r"^unknown config key KD.NOPE; keys allowed here: TEMPERATURE$"):
        load_cfg(None, ["KD.NOPE", "1"])
    with pytest.raises(ConfigError, match=r"^config key LOGIT_MSE.WARMUP expects int, got str 'soon'$"):
        load_cfg(None, ["LOGIT_MSE.WARMUP", "soon"])
    # the stack's plug-in term, by hand: MSE_WEIGHT * mean squared logit gap on the weak view
    torch.manual_seed(0)
    student, teacher = create_model("resnet8", 3), create_model("resnet8", 3)
    stack = build_distiller(cfg, student, teacher).eval()
    weak, strong, target = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    s_outs, t_outs = [student(weak), student(strong)], [teacher(weak), teacher(strong)]
    _, losses = stack.distill(s_outs, t_outs, target, epoch=1)
    expected = 0.25 * ((s_outs[0][0] - t_outs[0][0]) ** 2).mean()
    assert torch.allclose(losses["LOGIT_MSE.loss_mse"], expected)
    assert "LOGIT_MSE.loss_ce" not in losses and "SLD.loss_ce" in losses
    assert torch.allclose(expected, 0.25 * F.mse_loss(s_outs[0][0], t_outs[0][0]))


def test_a_section_without_its_plugin_says_how_to_load_it():
    with pytest.raises(ConfigError, match=r"^unknown config section LOGIT_MSE; if a plug-in adds it, name the "
                                          r"plug-in's module in PLUGINS \(or pass --plugin MODULE\)$"):
        load_cfg(None, ["LOGIT_MSE.MSE_WEIGHT", "0.1"])


def test_register_refuses_clashing_sections(registries):
    @register("MY_PLUGIN_TEST", cfg_node={"ALPHA": 1.0})
    class Mine(Distiller):
        pass

    register("MY_PLUGIN_TEST", cfg_node={"ALPHA": 1.0})  # the same defaults again (a re-import): fine
    assert distiller_dict["MY_PLUGIN_TEST"] is Mine and load_cfg().MY_PLUGIN_TEST.ALPHA == 1.0
    with pytest.raises(ConfigError, match=r"^config section MY_PLUGIN_TEST is registered twice with different "
                                          r"defaults; register it once \(or give the second one another name\)$"):
        register("MY_PLUGIN_TEST", cfg_node={"ALPHA": 2.0})
    with pytest.raises(ConfigError, match=r"^config section KD is built in; register the plug-in's section under "
                                          r"another name$"):
        register("KD", cfg_node={"ALPHA": 1.0})
    with pytest.raises(ConfigError, match=r"^config section 'my_kd': name a plug-in's section in upper case"):
        register("my_kd", cfg_node={"ALPHA": 1.0})
    assert distiller_dict["KD"] is KD  # refused registrations change nothing


def test_mdistiller_style_registration_still_works(registries):
    class Legacy(_base.Distiller):
        def __init__(self, student, teacher, cfg):
            super().__init__(student, teacher)

        def forward_train(self, image, target, **kwargs):
            return self.student(image)[0], {}

    distiller_dict["LEGACY_TEST"] = Legacy
    cfg = load_cfg(None, ["DISTILLER.TYPE", "LEGACY_TEST"])
    built = build_distiller(cfg, create_model("resnet8", 3), create_model("resnet8", 3)).train()
    assert type(built) is Legacy
    image = torch.randn(2, 3, 16, 16)
    logits, losses = built(image=image, target=torch.tensor([0, 1]), epoch=1)  # its own forward_train runs
    assert losses == {} and torch.equal(logits, built.student(image)[0])


def test_one_helper_tells_legacy_from_new_style():
    class NewStyle(KD):
        pass

    class Legacy(Distiller):
        def forward_train(self, image, target, **kwargs):
            return self.student(image)[0], {}

    class LegacyChild(Legacy):
        def distill(self, *args, **kwargs):  # a distill below a forward_train override is never called
            raise AssertionError

    assert not is_legacy(KD) and not is_legacy(NewStyle) and not is_legacy(Distiller)
    assert is_legacy(Legacy) and is_legacy(LegacyChild) and is_legacy(_base.Distiller)


def test_weak_view_only_keeps_its_old_import_path():
    from mdistiller.distillers.base import WeakViewOnly
    from mdistiller.distillers.kd import WeakViewOnly as old

    assert old is WeakViewOnly and WeakViewOnly.views == (1, 2)
