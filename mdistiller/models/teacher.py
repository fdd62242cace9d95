"""Building a teacher network with its trained weights.

Where the weights come from, first match wins:
  1. DISTILLER.TEACHER_WEIGHTS (any checkpoint `load_weights` understands, e.g. a student_best,
     or the student part of a run's full best/latest);
  2. the zoo default: mdistiller's `download_ckpts/...` path (relative to the working directory)
     for CIFAR-100 and Tiny-ImageNet teachers, torchvision's IMAGENET1K_V1 weights for ImageNet.
Models from outside the zoo (timm:..., torchvision:..., package.module:callable) have no
default: they need DISTILLER.TEACHER_WEIGHTS (.pth or .safetensors), unless their
DISTILLER.TEACHER_KWARGS explicitly ask timm/torchvision to download published weights, and
those exist for the whole network (the classifier included: same number of classes).
"""
import os

from ..runtime.checkpoint_io import extract_student_state_dict, load_weights, missing_weights_words
from ..errors import CheckpointError, ConfigError, UnreadableCheckpoint
from .external import is_external, published_weights_problem
from .registry import create_model, model_entry, model_settings

DEFAULT_NUM_CLASSES = {"cifar100": 100, "tiny_imagenet": 200, "imagenet": 1000}
INTACT_TEACHER = "point DISTILLER.TEACHER_WEIGHTS to an intact teacher checkpoint (e.g. a run's student_best)"
TEACHERS_PROJECT = "cifar100_teachers"  # EXPERIMENT.PROJECT of configs/cifar100/vanilla/*.yaml


def vanilla_config(name):
    """The config that trains CIFAR-100 teacher `name` from scratch (exists for every teacher
    with a default checkpoint)."""
    return f"configs/cifar100/vanilla/{name}.yaml"


def vanilla_output(name):
    """Where training `vanilla_config(name)` writes the weights to pass as DISTILLER.TEACHER_WEIGHTS."""
    return f"output/{TEACHERS_PROJECT}/{name}_vanilla/student_best"


def _train_hint(name, dataset, has_config):
    if has_config:
        return (f"`python tools/train.py --cfg {vanilla_config(name)}` and pass its student_best via "
                f"DISTILLER.TEACHER_WEIGHTS {vanilla_output(name)}")
    return (f"`python tools/train.py --cfg <config> DATASET.TYPE {dataset} DISTILLER.TYPE NONE "
            f"DISTILLER.STUDENT {name}` and pass its student_best via DISTILLER.TEACHER_WEIGHTS")


def missing_teacher_message(name, dataset, path):
    where = os.path.abspath(path)
    if dataset == "cifar100":
        return (f"teacher checkpoint for {name} not found at {where}: install mdistiller's published teachers "
                f"with `mdistiller-fetch-teachers` (or python tools/fetch_teachers.py) from this folder, "
                f"or train the teacher here with "
                + _train_hint(name, dataset, has_config=True))
    return (f"teacher checkpoint for {name} not found at {where}: put the {dataset} teacher there, "
            f"or train it with " + _train_hint(name, dataset, has_config=False))


def teacher_checkpoint(name, dataset="cifar100", weights_path="", kwargs=None, num_classes=None):
    """The file teacher `name` takes its trained weights from (see the module docstring), or None
    when its constructor brings them (ImageNet zoo models, timm/torchvision loading published
    weights for `num_classes` classes; None: not yet known, not compared); a one-line
    CheckpointError/ConfigError when there is none. Builds nothing."""
    if weights_path:
        if not os.path.isfile(weights_path):
            raise CheckpointError(f"config key DISTILLER.TEACHER_WEIGHTS is {weights_path!r}, "
                                  f"which {missing_weights_words(weights_path)}; point it to a teacher checkpoint "
                                  "(e.g. a run's student_best)")
        return weights_path
    if is_external(name):
        problem = published_weights_problem(name, kwargs or {}, num_classes, "DISTILLER.TEACHER")
        if problem is not None:  # a random teacher is never distilled from
            raise ConfigError(f"teacher {name} needs trained weights{problem}: set DISTILLER.TEACHER_WEIGHTS to "
                              "a .pth or .safetensors file (e.g. the student_best of a DISTILLER.TYPE NONE run of "
                              f"{name})")
        return None
    _, default_path = model_entry(name, dataset, key="DISTILLER.TEACHER")
    if dataset == "imagenet":
        return None
    if default_path is None:
        raise ConfigError(f"{name} has no default {dataset} teacher checkpoint; set DISTILLER.TEACHER_WEIGHTS: "
                          "train one with " + _train_hint(name, dataset, has_config=False))
    if not os.path.isfile(default_path):
        raise CheckpointError(missing_teacher_message(name, dataset, default_path))
    return default_path


def build_teacher(name, num_classes=None, dataset="cifar100", weights_path="", **settings):
    """Teacher `name` for `dataset` with trained weights, in eval mode (see module docstring).
    `settings`: create_model's kwargs / features / input_size."""
    settings.setdefault("key", "DISTILLER.TEACHER")
    if num_classes is None:
        if dataset not in DEFAULT_NUM_CLASSES:
            raise ConfigError(f"the number of classes of a {dataset} teacher is not known; "
                              "set DATASET.NUM_CLASSES")
        num_classes = DEFAULT_NUM_CLASSES[dataset]
    path = teacher_checkpoint(name, dataset, weights_path, settings.get("kwargs"), num_classes)
    if path is None and not is_external(name):  # the ImageNet zoo: torchvision's published weights
        constructor, _ = model_entry(name, dataset, key="DISTILLER.TEACHER")
        return constructor(num_classes=num_classes, pretrained=True).eval()
    model = create_model(name, num_classes, dataset, **settings)
    if path is None:
        return model.eval()  # timm/torchvision downloaded the weights
    if not weights_path:
        return load_weights(model, path).eval()
    # A run's full `best`/`latest` works too: its student part is the classifier.
    try:
        model = load_weights(model, path, extract=extract_student_state_dict)
    except UnreadableCheckpoint as err:
        raise UnreadableCheckpoint(f"{err}; {INTACT_TEACHER}") from None
    return model.eval()


def load_teacher(cfg, num_classes=None, input_size=(32, 32)):
    """Teacher named by cfg.DISTILLER.TEACHER for cfg.DATASET.TYPE, weights from
    cfg.DISTILLER.TEACHER_WEIGHTS or the zoo default; `input_size` is the training resolution."""
    return build_teacher(cfg.DISTILLER.TEACHER, num_classes, cfg.DATASET.TYPE, cfg.DISTILLER.TEACHER_WEIGHTS,
                         **model_settings(cfg, "TEACHER", input_size))
