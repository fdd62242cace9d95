"""Section 4: divergence inside an epoch, and bad numbers or weights, end in one true line."""
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mdistiller.models import create_model

NON_FINITE = "non-finite"
REPO = Path(__file__).resolve().parents[2]


def _one_line(ctx, done, *parts, code=2):
    # error lines only: a first decode of real CIFAR-100 says on stderr where its cache goes
    lines = [line for line in done.stderr.strip().splitlines() if line.startswith("error: ")]
    ok = done.returncode == code and len(lines) == 1 and all(p in lines[0] for p in parts)
    return ctx.expect(ok, f"wanted exit {code} and one line with {parts}; got rc {done.returncode}: "
                          f"{done.stderr[-400:]}")


def _cifar_like(ctx):
    """ctx.cifar when given, else a 100-class 32x32 image folder (one train and one test image per class)."""
    if ctx.cifar:
        return str(ctx.cifar)
    root = ctx.ws / "data" / "cifar_like"
    if not root.exists():
        rng = np.random.default_rng(4)
        for split in ("train", "test"):
            for c in range(100):
                (root / split / f"class{c:03d}").mkdir(parents=True)
                pixels = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / f"class{c:03d}" / "0.png")
    return str(root)


def _save(ctx, name, model, edit=None):
    """An mdistiller-format file ({"model": state_dict}) under the workspace's weights/."""
    state = model.state_dict()
    if edit:
        edit(state)
    path = ctx.ws / "weights" / name
    path.parent.mkdir(exist_ok=True)
    torch.save({"model": state}, path)
    return str(path)


def _overflowing_resnet8(ctx, classes=3):
    torch.manual_seed(1)

    def blow_up(state):
        for key in ("conv1.weight", "layer1.0.conv1.weight", "layer1.0.conv2.weight"):
            state[key] = state[key] * 1e30

    return _save(ctx, "overflow.pth", create_model("resnet8", classes, "cifar100"), blow_up)


def stacked_faithful_kdsvd_trains_or_stops_in_one_line(ctx):
    torch.manual_seed(0)
    teacher = _save(ctx, "resnet32x4.pth", create_model("resnet32x4", 100, "cifar100"))
    done = ctx.run("train", "--cfg", str(REPO / "configs/cifar100/sld/res32x4_res8x4.yaml"), "--quiet", "DEVICE", "cpu",
                   "DISTILLER.STACK", "[KDSVD]", "SOLVER.BATCH_SIZE", "16", "DATASET.TRAIN_SUBSET", "48",
                   "DATASET.TEST_SUBSET", "100", "SOLVER.EPOCHS", "1", "DATASET.ROOT", _cifar_like(ctx),
                   "DATASET.TYPE", "cifar100" if ctx.cifar else "imagefolder", "DATASET.NUM_WORKERS", "0",
                   "DATASET.CACHE_DIR", str(ctx.cache), "DISTILLER.TEACHER_WEIGHTS", teacher,
                   "LOG.PREFIX", str(ctx.output), "EXPERIMENT.PROJECT", "s4", "EXPERIMENT.NAME", "kdsvd")
    if done.returncode:
        _one_line(ctx, done, NON_FINITE, "KDSVD.loss_kd", "epoch 1", "committed")


def kdsvd_features_that_overflow_name_the_term(ctx):
    done = ctx.run("train", *ctx.train_args("kdsvd_overflow", "DISTILLER.TYPE", "KDSVD", "DISTILLER.TEACHER",
                                            "resnet8", "DISTILLER.TEACHER_WEIGHTS", _overflowing_resnet8(ctx)))
    _one_line(ctx, done, "non-finite loss at epoch 1, iteration 1/", "loss_kd", "no epoch had been committed",
              "first step, before any update")


def train_subset_of_one_is_refused_before_training(ctx):
    done = ctx.run("train", *ctx.train_args("subset1", "DATASET.TRAIN_SUBSET", "1"))
    _one_line(ctx, done, "too few for one batch", "use at least 2 training samples")
    ctx.expect(not (ctx.output / "rel" / "subset1" / "worklog.txt").exists(), "TRAIN_SUBSET 1 wrote a worklog")


def temperatures_written_as_python_writes_them_are_numbers(ctx):
    done = ctx.run("train", *ctx.train_args("temps", "DISTILLER.TYPE", "SLD", "DISTILLER.TEACHER", "resnet8",
                                            "DISTILLER.TEACHER_WEIGHTS", _save(ctx, "t8.pth", create_model(
                                                "resnet8", 3, "cifar100")), "SLD.TEMPERATURES", "[1e30]"))
    ctx.expect("not a positive number" not in done.stderr, f"1e30 refused as a non-number: {done.stderr[-300:]}")
    if done.returncode:
        _one_line(ctx, done, NON_FINITE)


def eval_json_stays_json(ctx):
    done = ctx.run("eval", "-m", "resnet8", "-c", _overflowing_resnet8(ctx), "-d", "imagefolder", "--root",
                   str(ctx.image_folder()), "--json", "DATASET.NUM_WORKERS", "0", "DEVICE", "cpu", "LOG.QUIET", "True")
    try:
        result = json.loads(done.stdout, parse_constant=lambda name: 1 / 0)
        ctx.expect(result["loss"] is None and result.get("null_reason"), f"no null and reason: {result}")
    except (ValueError, ZeroDivisionError, KeyError):
        ctx.expect(False, f"eval --json printed no valid JSON: {done.stdout[-300:]}")


BAD = {"nan": lambda t: t.clone().fill_(float("nan")), "int32": lambda t: t.to(torch.int32),
       "bool": lambda t: t > 0, "complex": lambda t: t.to(torch.complex64), "float": lambda t: 0.5}


def weights_that_are_not_finite_floats_are_refused(ctx):
    for kind, make in BAD.items():
        def edit(state, make=make):
            state["conv1.weight"] = make(state["conv1.weight"])

        path = _save(ctx, f"{kind}.pth", create_model("resnet8", 3, "cifar100"), edit)
        done = ctx.run("eval", "-m", "resnet8", "-c", path, "-d", "imagefolder", "--root", str(ctx.image_folder()),
                       "DATASET.NUM_WORKERS", "0", "DEVICE", "cpu", "LOG.QUIET", "True")
        _one_line(ctx, done, path, "conv1.weight")
        done = ctx.run("train", *ctx.train_args(f"init_{kind}", "DISTILLER.STUDENT_WEIGHTS", path))
        _one_line(ctx, done, path, "conv1.weight")


def a_folder_as_teacher_weights_names_the_file_inside(ctx):
    run = ctx.output / "rel" / "teacher_run"
    run.mkdir(parents=True, exist_ok=True)
    torch.save({"model": create_model("resnet8", 3, "cifar100").state_dict()}, run / "student_best")
    done = ctx.run("train", *ctx.train_args("from_folder", "DISTILLER.TYPE", "KD", "DISTILLER.TEACHER", "resnet8",
                                            "DISTILLER.TEACHER_WEIGHTS", str(run)))
    _one_line(ctx, done, "is a folder", str(run / "student_best"))


CASES = [
    ("SLD + faithful KDSVD (the issue's command) trains or stops in one line", stacked_faithful_kdsvd_trains_or_stops_in_one_line),
    ("KDSVD on non-finite features names loss_kd, epoch and iteration", kdsvd_features_that_overflow_name_the_term),
    ("DATASET.TRAIN_SUBSET 1 is refused before training", train_subset_of_one_is_refused_before_training),
    ("SLD.TEMPERATURES [1e30] is a number", temperatures_written_as_python_writes_them_are_numbers),
    ("eval --json with a NaN loss prints valid JSON", eval_json_stays_json),
    ("NaN/int32/bool/complex/float weights are refused in eval and as a student init",
     weights_that_are_not_finite_floats_are_refused),
    ("a folder as DISTILLER.TEACHER_WEIGHTS names the file inside", a_folder_as_teacher_weights_names_the_file_inside),
]
