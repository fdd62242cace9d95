"""mdistiller's `mdistiller/distillers/_base.py` names, for distiller files written for mdistiller.

A file copied from mdistiller (or from the MLKD / SLD authors' forks of it) into this folder
starts with `from ._base import Distiller`; it gets these classes, which behave as mdistiller's:
  * `Distiller.get_learnable_parameters()` is the student's parameters only (plug-ins add their
    own modules' parameters, as mdistiller's FitNet or CRD do), `get_extra_parameters()` is 0;
  * `Vanilla(student)` trains the student with cross-entropy and names its term "ce".
Everything else (teacher kept in eval mode, the forward contract, the keyword arguments
`forward_train` gets for DATASET.VIEWS / DATASET.INDICES) is our base class's, see base.py.
"""
import torch.nn.functional as F

from . import base
from .vanilla import Vanilla as _Vanilla


class Distiller(base.Distiller):
    """mdistiller's base class: subclasses override `forward_train`."""

    def get_learnable_parameters(self):
        return [p for _, p in self.student.named_parameters()]

    def get_extra_parameters(self):
        return 0

    def forward_train(self, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement forward_train")


class Vanilla(_Vanilla):
    """mdistiller's Vanilla: `Vanilla(student)`, cross-entropy only, loss term "ce"."""

    def get_learnable_parameters(self):
        return [p for _, p in self.student.named_parameters()]

    def forward_train(self, image, target, **kwargs):
        logits, _ = self.student(image)
        return logits, {"ce": F.cross_entropy(logits, target)}
