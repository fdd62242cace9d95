"""Feature shapes of models, and which feature distillers fit a (teacher, student) pair.

Feature distillers decide their connector modules from the shapes of the features a model
returns (`feats["feats"]`, `feats["preact_feats"]`, `feats["pooled_feat"]`). This module runs
one dummy forward pass to read those shapes (in eval mode, so no BatchNorm statistics move),
and prints them for a pair together with each feature method's verdict:

    python tools/feature_shapes.py resnet32x4 resnet8x4
    python tools/feature_shapes.py ResNet34 ResNet18 --dataset imagenet
    python tools/feature_shapes.py timm:resnet10t timm:vit_tiny_patch16_224 \
        DISTILLER.STUDENT_KWARGS "{img_size: 32, patch_size: 4}"
"""
import torch

from ..errors import ConfigError

# Input resolution per dataset type, for shape probes that do not name their own size.
DATASET_INPUT_SIZE = {"cifar100": 32, "tiny_imagenet": 64, "imagenet": 224}
NUM_CLASSES = {"cifar100": 100, "tiny_imagenet": 200, "imagenet": 1000}


def input_size_for(cfg):
    """(H, W) the models see during training, or None when only the data knows it."""
    size = cfg.DATASET.IMAGE_SIZE or DATASET_INPUT_SIZE.get(cfg.DATASET.TYPE)
    return (size, size) if size else None


def probe_features(model, input_size=(32, 32)):
    """The `feats` dict of one forward pass on a zero image of `input_size`.

    Runs without gradient in eval mode (restoring the previous mode afterwards), so neither
    BatchNorm running statistics nor autograd state change."""
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            _, feats = model(torch.zeros(2, 3, *input_size, device=device))
    finally:
        model.train(was_training)
    return feats


def feature_shapes(model, input_size=(32, 32)):
    """{"feats": [(C, H, W), ...], "preact_feats": [...], "pooled_feat": (D,)} of one sample.
    A key the model does not give is absent (a wrapped timm ViT has no preact_feats)."""
    feats = probe_features(model, input_size)
    shapes = {key: [tuple(f.shape[1:]) for f in feats[key]] for key in ("feats", "preact_feats") if key in feats}
    if "pooled_feat" in feats:
        shapes["pooled_feat"] = tuple(feats["pooled_feat"].shape[1:])
    return shapes


FEATURE_METHODS = ("FITNET", "AT", "NST", "PKT", "KDSVD", "OFD", "RKD", "VID", "SP", "CRD", "REVIEWKD")


def method_verdicts(teacher, student, cfg, methods=FEATURE_METHODS):
    """{method: "fits" or the one-line ConfigError that building it raises} for this pair."""
    from .registry import get_distiller_class

    verdicts = {}
    for name in methods:
        cls = get_distiller_class(name)
        try:
            # CRD sizes its memory bank by the dataset; a tiny bank is enough to check shapes.
            cls(student, teacher, cfg, num_data=2) if cls.needs_index else cls(student, teacher, cfg)
            verdicts[name] = "fits"
        except ConfigError as err:
            verdicts[name] = str(err)
    return verdicts


def describe_pair(teacher, student, cfg, input_size=None):
    """A printable report: both models' feature shapes side by side, then per-method verdicts
    (the models are named by cfg.DISTILLER.TEACHER / STUDENT)."""
    size = input_size or input_size_for(cfg) or (32, 32)
    shapes = {"teacher": feature_shapes(teacher, size), "student": feature_shapes(student, size)}
    lines = [f"input {size[0]}x{size[1]}; teacher {cfg.DISTILLER.TEACHER}, student {cfg.DISTILLER.STUDENT}",
             f"{'feature':<18}{'teacher (C, H, W)':<24}{'student (C, H, W)':<24}"]
    for key in ("feats", "preact_feats"):
        t_list, s_list = shapes["teacher"].get(key, []), shapes["student"].get(key, [])
        for i in range(max(len(t_list), len(s_list))):
            t = str(t_list[i]) if i < len(t_list) else "-"
            s = str(s_list[i]) if i < len(s_list) else "-"
            lines.append(f"{key}[{i}]".ljust(18) + t.ljust(24) + s.ljust(24))
    lines.append("pooled_feat".ljust(18) + str(shapes["teacher"].get("pooled_feat", "-")).ljust(24)
                 + str(shapes["student"].get("pooled_feat", "-")).ljust(24))
    lines.append("feature distillers with default settings:")
    for name, verdict in method_verdicts(teacher, student, cfg).items():
        lines.append(f"  {name:<9} {verdict}")
    return "\n".join(line.rstrip() for line in lines)
