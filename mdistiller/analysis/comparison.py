"""Teacher-vs-student numbers on a labelled set, from their logits (numpy arrays, (N, C)).

All pure functions; `targets` is (N,) integer labels. Accuracies are percentages.
"""
from dataclasses import dataclass
from typing import List

import numpy as np

ECE_BINS = 15  # the usual choice since Guo et al. 2017 ("On Calibration of Modern Neural Networks")


def softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def accuracy(logits, targets):
    return 100.0 * float(np.mean(logits.argmax(axis=1) == targets)) if len(targets) else float("nan")


def per_class_accuracy(logits, targets, num_classes):
    """(C,) top-1 accuracy per true class; NaN for classes without samples."""
    right = np.bincount(targets, weights=(logits.argmax(axis=1) == targets), minlength=num_classes)
    seen = np.bincount(targets, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(seen > 0, 100.0 * right / np.maximum(seen, 1), np.nan)


def class_mean_logits(logits, targets, num_classes):
    """(C, C): row c is the mean logit vector over the samples of true class c (NaN if none)."""
    sums = np.zeros((num_classes, logits.shape[1]))
    np.add.at(sums, targets, logits)
    seen = np.bincount(targets, minlength=num_classes)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(seen > 0, sums / np.maximum(seen, 1), np.nan)


def logit_correlation_gap(teacher_logits, student_logits, targets, num_classes):
    """The DKD paper's view of how well a student copies the teacher's inter-class structure:
    |class-mean logits of the teacher - those of the student|, (C, C), with the diagonal (the
    true class's own logit) set to 0 so that only the relations between classes remain."""
    gap = np.abs(class_mean_logits(teacher_logits, targets, num_classes)
                 - class_mean_logits(student_logits, targets, num_classes))
    np.fill_diagonal(gap, 0.0)
    return gap


def off_diagonal(matrix):
    return matrix[~np.eye(matrix.shape[0], dtype=bool)]


@dataclass
class Reliability:
    """A reliability diagram: per confidence bin (equal widths over (0, 1]) the mean confidence,
    the accuracy and the sample count; `ece` = sum_b n_b / N * |acc_b - conf_b| (percent)."""
    edges: np.ndarray
    confidence: np.ndarray  # mean top softmax probability per bin (NaN when empty)
    accuracy: np.ndarray  # fraction right per bin (NaN when empty)
    counts: np.ndarray
    ece: float


def reliability(logits, targets, bins=ECE_BINS):
    probs = softmax(logits)
    conf = probs.max(axis=1)
    right = (probs.argmax(axis=1) == targets).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # bin b holds confidences in (edges[b], edges[b + 1]]
    index = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=conf, minlength=bins) / counts
        mean_acc = np.bincount(index, weights=right, minlength=bins) / counts
    filled = counts > 0
    ece = 100.0 * float(np.sum(counts[filled] / counts.sum() * np.abs(mean_acc[filled] - mean_conf[filled])))
    return Reliability(edges, mean_conf, mean_acc, counts, ece)


@dataclass
class RescuedPair:
    true: int
    teacher_pred: int
    count: int


def rescued_pairs(teacher_logits, student_logits, targets) -> List[RescuedPair]:
    """Confusions the teacher makes that the student gets right: (true class, teacher's wrong
    prediction) pairs over the samples where the teacher is wrong and the student right, most
    frequent first (ties by class indices)."""
    t_pred, s_pred = teacher_logits.argmax(axis=1), student_logits.argmax(axis=1)
    fixed = (t_pred != targets) & (s_pred == targets)
    pairs, counts = np.unique(np.stack([targets[fixed], t_pred[fixed]], axis=1), axis=0, return_counts=True)
    found = [RescuedPair(int(t), int(p), int(c)) for (t, p), c in zip(pairs, counts)]
    return sorted(found, key=lambda r: (-r.count, r.true, r.teacher_pred))


def disagreement_counts(teacher_logits, student_logits, targets):
    """(teacher wrong & student right, teacher right & student wrong) sample counts."""
    t_right = teacher_logits.argmax(axis=1) == targets
    s_right = student_logits.argmax(axis=1) == targets
    return int(np.sum(~t_right & s_right)), int(np.sum(t_right & ~s_right))
