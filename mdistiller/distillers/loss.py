"""`CrossEntropyLabelSmooth`, which distiller files of the MLKD and SLD repositories import
(`from .loss import CrossEntropyLabelSmooth`)."""
import torch
import torch.nn.functional as F
from torch import nn


class CrossEntropyLabelSmooth(nn.Module):
    """Cross-entropy against label-smoothed targets (Szegedy et al. 2016):
    y = (1 - epsilon) * one_hot + epsilon / num_classes, loss = -sum_c y_c log p_c per sample,
    averaged over the batch when `reduction` is true. `use_gpu` is accepted for those files'
    signature; the targets are built on the inputs' device either way."""

    def __init__(self, num_classes, epsilon=0.1, use_gpu=True, reduction=True):
        super().__init__()
        self.num_classes = num_classes
        self.epsilon = epsilon
        self.use_gpu = use_gpu
        self.reduction = reduction

    def forward(self, inputs, targets):
        log_probs = F.log_softmax(inputs, dim=1)
        one_hot = torch.zeros_like(log_probs).scatter_(1, targets.unsqueeze(1), 1.0)
        smoothed = (1 - self.epsilon) * one_hot + self.epsilon / self.num_classes
        loss = -(smoothed * log_probs).sum(dim=1)
        return loss.mean() if self.reduction else loss
