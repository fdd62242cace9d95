"""Top-1 / top-5 accuracy and cross-entropy of a classifier on a test loader.

Shared by the trainer (every epoch) and tools/eval.py. Counts stay on the device until the
end; under DDP each rank evaluates its shard of the test set (`data.loaders.make_loader`) and
the ranks' sums are added, so the metrics are those of the whole set.
"""
import os

import torch
import torch.nn.functional as F

from ..errors import CheckpointError
from ..runtime.checkpoint_io import extract_student_state_dict, load_weights, missing_weights_words
from .device import autocast, configure_backends, prepare_model, resolve_channels_last, resolve_device, to_device
from .distributed import DistInfo
from .metrics import RunningSums, correct_counts
from .progress import Bar


def split_test_batch(batch):
    """Test batches are `(image, target)` tuples; dict batches are accepted too."""
    if isinstance(batch, dict):
        return batch["image"], batch["target"]
    return batch[0], batch[1]


@torch.no_grad()
def evaluate(predict, loader, device, amp="none", channels_last=False, info=DistInfo(), progress=False):
    """`predict(image) -> logits`. Returns {"top1", "top5", "loss", "count"} (percent / mean CE)."""
    sums = RunningSums(device)
    bar = Bar(len(loader), "eval", progress and info.is_main)
    for batch in loader:
        image, target = to_device(split_test_batch(batch), device, channels_last)
        with autocast(device, amp):
            logits = predict(image)
        logits = logits.float()
        n = target.shape[0]
        top1, top5 = correct_counts(logits, target, topk=(1, 5))
        sums.add("loss", F.cross_entropy(logits, target), n)
        sums.add_sum("top1", top1)
        sums.add_sum("top5", top5)
        sums.add_samples(n)
        bar.advance()
    bar.close()
    means, count = sums.read(info)
    if count == 0:
        return {"top1": 0.0, "top5": 0.0, "loss": float("nan"), "count": 0}
    return {"top1": 100.0 * means["top1"], "top5": 100.0 * means["top5"], "loss": means["loss"], "count": count}


def evaluate_checkpoint(cfg, name, ckpt="pretrain", progress=True):
    """tools/eval.py: evaluate architecture `name` with weights `ckpt` on cfg's test split.
    `ckpt` "pretrain" means the model zoo's teacher weights for `name`."""
    from ..data import build_loaders
    from ..distillers.shapes import input_size_for
    from ..models import check_model, create_model, load_teacher, model_settings

    if ckpt != "pretrain" and not os.path.isfile(ckpt):  # before reading any data
        raise CheckpointError(f"checkpoint {ckpt} (-c/--ckpt) {missing_weights_words(ckpt)}; pass a run's "
                              "student_best, latest or best, or a teacher checkpoint file")
    # a model outside the zoo is built with DISTILLER.STUDENT_KWARGS / _FEATURES ("pretrain": as a teacher)
    role = "TEACHER" if ckpt == "pretrain" else "STUDENT"
    settings = {**model_settings(cfg, role, input_size_for(cfg) or (32, 32)), "key": "-m/--model"}
    check_model(name, cfg.DATASET.TYPE, **settings)  # what the name stands for, before any data is read
    device = resolve_device(cfg.DEVICE)
    configure_backends(device, cfg.DETERMINISTIC)
    _, test_loader, _, num_classes = build_loaders(cfg, 1, device=device)
    if ckpt == "pretrain":
        zoo = cfg.clone()
        zoo.defrost()
        zoo.DISTILLER.TEACHER, zoo.DISTILLER.TEACHER_WEIGHTS = name, ""
        model = load_teacher(zoo, num_classes)
    else:
        model = load_weights(create_model(name, num_classes, cfg.DATASET.TYPE, **settings), ckpt,
                             extract=extract_student_state_dict)
    channels_last = resolve_channels_last(cfg.SOLVER.CHANNELS_LAST, device)
    prepare_model(model, device, channels_last).eval()
    result = evaluate(lambda image: model(image)[0], test_loader, device, cfg.SOLVER.AMP,
                      channels_last, progress=progress and not cfg.LOG.QUIET)
    return dict(model=name, checkpoint=ckpt, dataset=cfg.DATASET.TYPE, **result)
