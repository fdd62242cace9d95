"""Section 1: a config file or a run folder runs no code and touches no file (model names, plug-ins)."""
import os
import pickle
from pathlib import Path

import yaml

NOT_A_MODEL = "a model name is a zoo name, timm:<name>, torchvision:<name>, or package.module:callable"


class _Marks:
    """Unpickled with full pickle, this creates its marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def _scratch(ctx):
    """<ws>/s1: the group's own files (configs, a victim file, hostile files), written by the cases
    themselves, outside output/: the programs must not touch any of them."""
    folder = ctx.ws / "s1"
    if not folder.exists():
        folder.mkdir()
        (folder / "victim.txt").write_text("keep me")
        with open(folder / "evil.pth", "wb") as f:
            pickle.dump({"model": _Marks(str(ctx.markers / "unpickled"))}, f)
        ctx.hostile_module(folder / "hub", "hubconf")
        code = folder / "usercode"
        code.mkdir()
        (code / "reexports.py").write_text("from logging import basicConfig\nfrom os import system\n")
        (code / "own_nets.py").write_text("import torch.nn as nn\n\ndef build(num_classes, pretrained=False):\n"
                                          "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))\n")
    return folder


def _user_env(ctx):
    env = ctx.env()
    env["PYTHONPATH"] = os.pathsep.join([str(_scratch(ctx) / "usercode"), env["PYTHONPATH"]])
    return env


def _train_cfg(ctx, name, distiller):
    """A YAML config (the case's hostile DISTILLER section) and the train.py arguments that use it."""
    path = _scratch(ctx) / f"{name}.yaml"
    data = {"DEVICE": "cpu", "DATASET": {"TYPE": "imagefolder", "ROOT": str(ctx.image_folder()), "NUM_WORKERS": 0},
            "SOLVER": {"BATCH_SIZE": 8, "EPOCHS": 1}, "LOG": {"PREFIX": str(ctx.output), "QUIET": True},
            "EXPERIMENT": {"PROJECT": "rel", "NAME": f"s1-{name}"},
            "DISTILLER": {"TYPE": "KD", "TEACHER": "resnet8", "STUDENT": "resnet8", **distiller}}
    path.write_text(yaml.safe_dump(data))
    return ["--cfg", str(path)]


def _refused(ctx, done, start, what):
    ctx.expect(done.returncode == 2, f"{what}: exit code {done.returncode}, not 2: {done.stderr[-300:]}")
    # the refusal first, then any other problem the up-front checks found (one `error:` line each)
    lines = done.stderr.splitlines()
    ctx.expect(lines and lines[0].startswith(start) and all(line.startswith("error: ") for line in lines),
               f"{what}: not the refusal {start!r}... first, in error lines: {done.stderr[-400:]}")


def _hostile_names(ctx):
    """(role, name, kwargs) of the issue's names, each with arguments that would leave a marker
    (or truncate the victim file) if the callable ran."""
    s1, marks = _scratch(ctx), ctx.markers
    return [
        ("STUDENT", "logging:basicConfig", {"filename": str(s1 / "victim.txt"), "filemode": "w", "force": True}),
        ("TEACHER", "torch.hub:load", {"repo_or_dir": str(s1 / "hub"), "model": "build", "source": "local",
                                       "pretrained": True}),
        ("STUDENT", "os:system", {"command": f"touch {marks / 'system'}"}),
        ("TEACHER", "subprocess:run", {"args": ["touch", str(marks / "run")]}),
        ("STUDENT", "builtins:exec", {"source": f"open({str(marks / 'exec')!r}, 'w')"}),
        ("STUDENT", "torch:load", {"f": str(s1 / "evil.pth"), "weights_only": False}),
        ("TEACHER", "numpy:load", {"file": str(s1 / "evil.pth"), "allow_pickle": True}),
    ]


def hostile_model_names_in_a_config(ctx):
    for role, name, kwargs in _hostile_names(ctx):
        tag = name.replace(":", "-").replace(".", "-")
        done = ctx.run("train", *_train_cfg(ctx, tag, {role: name, f"{role}_KWARGS": kwargs}))
        _refused(ctx, done, f"error: config key DISTILLER.{role} is '{name}', ", f"train with {role} {name}")
        ctx.expect(not (ctx.output / "rel" / f"s1-{tag}" / "latest").exists(), f"{name}: a run started")
    done = ctx.run("train", *_train_cfg(ctx, "exec", {"STUDENT": "exec"}))
    _refused(ctx, done, "error: config key DISTILLER.STUDENT is 'exec', not a ", "train with STUDENT exec")


def reexported_functions_of_a_user_module(ctx):
    s1 = _scratch(ctx)
    for attr, kwargs in (("basicConfig", {"filename": str(s1 / "victim.txt"), "filemode": "w", "force": True}),
                         ("system", {"command": f"touch {ctx.markers / 'system'}"})):
        done = ctx.run("train", *_train_cfg(ctx, f"reexport-{attr}", {"STUDENT": f"reexports:{attr}",
                                                                      "STUDENT_KWARGS": kwargs}), env=_user_env(ctx))
        _refused(ctx, done, f"error: config key DISTILLER.STUDENT is 'reexports:{attr}', a ", f"reexports:{attr}")


def programs_refuse_a_builtin_in_one_line(ctx):
    done = ctx.run("eval", "-m", "builtins:dict", "-d", "imagefolder", "--root", str(ctx.image_folder()),
                   "DEVICE", "cpu")
    _refused(ctx, done, "error: -m/--model is 'builtins:dict', which names the Python standard library",
             "eval -m builtins:dict")
    done = ctx.run("eval", "-m", "builtins:eval", "-d", "imagefolder", "--root", str(ctx.image_folder()),
                   "DEVICE", "cpu", "DISTILLER.TEACHER_KWARGS", f"{{source: \"open('{ctx.markers / 'e'}', 'w')\"}}")
    _refused(ctx, done, "error: -m/--model is 'builtins:eval', ", "eval -m builtins:eval")
    done = ctx.run("feature_shapes", "builtins:dict", "resnet8")
    _refused(ctx, done, "error: the teacher argument is 'builtins:dict', ", "feature_shapes builtins:dict resnet8")
    done = ctx.run("feature_shapes", "resnet8", "numpy:load", "DISTILLER.STUDENT_KWARGS",
                   f"{{file: {_scratch(ctx) / 'evil.pth'}, allow_pickle: true}}")
    _refused(ctx, done, "error: the student argument is 'numpy:load', ", "feature_shapes resnet8 numpy:load")


def plugins_that_are_not_module_paths(ctx):
    done = ctx.run("train", *_train_cfg(ctx, "plugins-path", {}), "PLUGINS", "['../etc']")
    _refused(ctx, done, "error: config key PLUGINS (--plugin / command line) names '../etc', which is not a module",
             "PLUGINS ['../etc']")
    path = _scratch(ctx) / "plugins.yaml"
    path.write_text("PLUGINS: ['../etc']\n")
    done = ctx.run("train", "--cfg", str(path))
    _refused(ctx, done, f"error: config key PLUGINS (in {path}) names '../etc'", "a YAML with PLUGINS ['../etc']")
    done = ctx.run("feature_shapes", "resnet8", "resnet8", "--plugin", ".rel")
    _refused(ctx, done, "error: config key PLUGINS (--plugin / command line) names '.rel'", "--plugin .rel")


def teacher_weights_only_from_published_weights(ctx):
    """`pretrained: true` spares TEACHER_WEIGHTS only where timm/torchvision load published weights
    for the whole network: not for the user's function, not for a 3-class timm head."""
    done = ctx.run("train", *_train_cfg(ctx, "own-pretrained", {"TEACHER": "own_nets:build",
                                                                "TEACHER_KWARGS": {"pretrained": True}}),
                   env=_user_env(ctx))
    _refused(ctx, done, "error: teacher own_nets:build needs trained weights (DISTILLER.TEACHER_KWARGS asks",
             "a user teacher with pretrained: true")
    if not _has_timm():
        return
    done = ctx.run("train", *_train_cfg(ctx, "timm-pretrained", {"TEACHER": "timm:resnet10t",
                                                                 "TEACHER_KWARGS": {"pretrained": True}}),
                   env=ctx.env(HF_HUB_OFFLINE="1", https_proxy="http://127.0.0.1:9"))
    _refused(ctx, done, "error: teacher timm:resnet10t needs trained weights (timm's published resnet10t classifies "
                        "1000 classes, the dataset has 3", "a 3-class timm teacher with pretrained: true")


def timm_arguments_that_load_files(ctx):
    if not _has_timm():
        return
    evil = str(_scratch(ctx) / "evil.pth")
    for key, kwargs in (("checkpoint_path", {"checkpoint_path": evil}),
                        ("pretrained_cfg_overlay", {"pretrained": True, "pretrained_cfg_overlay": {"file": evil}})):
        done = ctx.run("train", *_train_cfg(ctx, f"timm-{key}", {"STUDENT": "timm:resnet10t",
                                                                 "STUDENT_KWARGS": kwargs}))
        _refused(ctx, done, f"error: DISTILLER.STUDENT_KWARGS sets {key}, with which timm would read or write files",
                 f"timm {key} naming a hostile file")


def a_shared_run_folders_plugins_are_not_imported(ctx):
    """Someone's run folder lists a plug-in that sits beside it; analysing or evaluating the run
    from that folder imports nothing unless the command line names the plug-in."""
    done = ctx.run("train", *ctx.train_args("s1-shared"))
    ctx.expect(done.returncode == 0, f"the run to share failed: {done.stderr[-300:]}")
    run = Path(ctx.output, "rel", "s1-shared")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["PLUGINS"] = ["hostile_probe"]
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    ctx.hostile_module(run)
    token = ctx.keep_results(run)
    done = ctx.run("analyze", "-c", "student_best", "--quiet", "--tsne-samples", "0", cwd=run)
    _refused(ctx, done, f"error: the run in {run} was trained with plug-in module(s) hostile_probe (PLUGINS in its "
                        "config.yaml), and importing them runs their code; if you trust them, pass --plugin "
                        "hostile_probe (or --allow-plugins)", "analyze of a run with a hostile plug-in")
    done = ctx.run("eval", "-m", "resnet8", "-c", "student_best", "-d", "imagefolder", "--root",
                   str(ctx.image_folder()), "DEVICE", "cpu", "LOG.QUIET", "True", cwd=run)
    ctx.expect(done.returncode == 0, f"eval of the shared run failed: {done.stderr[-300:]}")
    ctx.check_results(token)


def analyze_a_vit_style_run(ctx):
    """The README's "Any classifier" run, small: a ViT student needing STUDENT_KWARGS; analyze
    builds it with the run's kwargs."""
    if not _has_timm():
        return
    teacher = Path(ctx.output, "rel", "s1-shared", "student_best")
    done = ctx.run("train", *ctx.train_args("s1-vit", "DATASET.IMAGE_SIZE", "16", "DISTILLER.TYPE", "KD",
                                            "DISTILLER.TEACHER", "resnet8", "DISTILLER.TEACHER_WEIGHTS", str(teacher),
                                            "DISTILLER.STUDENT", "timm:vit_tiny_patch16_224",
                                            "DISTILLER.STUDENT_KWARGS", "{img_size: 16, patch_size: 4, depth: 1}"))
    ctx.expect(done.returncode == 0, f"the ViT run failed: {done.stderr[-300:]}")
    done = ctx.run("analyze", "-c", str(Path(ctx.output, "rel", "s1-vit", "student_best")), "--quiet",
                   "--tsne-samples", "0")
    ctx.expect(done.returncode == 0, f"analyze of the ViT run failed: {done.stderr[-300:]}")


def _has_timm():
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


CASES = [
    ("hostile model names in a config run nothing", hostile_model_names_in_a_config),
    ("a user module's re-exported functions are not models", reexported_functions_of_a_user_module),
    ("eval and feature_shapes refuse builtins in one line", programs_refuse_a_builtin_in_one_line),
    ("PLUGINS that are not module paths: one line", plugins_that_are_not_module_paths),
    ("pretrained lifts TEACHER_WEIGHTS only for published weights", teacher_weights_only_from_published_weights),
    ("timm arguments that load files are refused", timm_arguments_that_load_files),
    ("a shared run folder's plug-ins are not imported", a_shared_run_folders_plugins_are_not_imported),
    ("analyze builds a ViT-style run with its kwargs", analyze_a_vit_style_run),
]
