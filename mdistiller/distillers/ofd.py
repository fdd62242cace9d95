"""OFD: "A Comprehensive Overhaul of Feature Distillation" (Heo et al., ICCV 2019)."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .cfg_checks import check_bool
from .feature_base import FeatureDistiller
from .feature_losses import ofd_loss, ofd_margin
from .registry import register


def connector(s_channels, t_channels, kernel_size):
    """Student -> teacher channels: conv (no bias, He-normal init) followed by BatchNorm."""
    conv = nn.Conv2d(s_channels, t_channels, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / (kernel_size * kernel_size * t_channels)))
    return nn.Sequential(conv, nn.BatchNorm2d(t_channels))


def require_method(model, method, role):
    if not callable(getattr(model, method, None)):
        raise ConfigError(f"OFD needs the {role} model {type(model).__name__} to provide {method}(); "
                          "use a model from mdistiller.models or add the method")


@register("OFD")
class OFD(FeatureDistiller):
    """Distils pre-ReLU stage features (`preact_feats[1:]`) through connectors with a partial L2
    towards the teacher clipped at a per-channel margin (derived from the BatchNorm before
    each stage's ReLU). Deeper stages weigh more: stage i of n counts 1 / 2^(n - 1 - i).

    OFD.FAITHFUL True (default), as mdistiller's OFD: the teacher is in train mode whenever the
    distiller is, so its BatchNorm layers normalise with the batch's statistics and their running
    statistics move every step (the teacher's weights never change); it runs once per view used.
    OFD.FAITHFUL False: the teacher stays in eval mode (running statistics, frozen) like every
    other distiller's, and runs once for all views."""

    weight_keys = ("OFD.LOSS.CE_WEIGHT", "OFD.LOSS.FEAT_WEIGHT")
    feature_needs = {"preact_feats": 4}

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher, cfg)
        self.teacher_trains = cfg.OFD.FAITHFUL  # also read by paired training: it gets its own teacher
        for model, role in ((teacher, "teacher"), (student, "student")):
            require_method(model, "get_stage_channels", role)
        require_method(teacher, "get_bn_before_relu", "teacher")
        t_channels = list(teacher.get_stage_channels())[1:]
        s_channels = list(student.get_stage_channels())[1:]
        bns = list(teacher.get_bn_before_relu())
        # Pair the deepest stages when the two models have different numbers of stages.
        self.num_stages = min(len(t_channels), len(s_channels), len(bns))
        n = self.num_stages
        kernel = cfg.OFD.CONNECTOR.KERNEL_SIZE
        self.connectors = nn.ModuleList(connector(s, t, kernel) for s, t in zip(s_channels[-n:], t_channels[-n:]))
        for i, bn in enumerate(bns[-n:]):
            # Constants of the frozen teacher: moved with the module, not saved in checkpoints.
            self.register_buffer(f"margin{i}", ofd_margin(bn.weight, bn.bias), persistent=False)

    @staticmethod
    def teacher_train_key(cfg):
        """The config key that puts the teacher in train mode when true (None when it is false):
        a stack, which runs one eval-mode teacher pass for all terms, refuses it; paired
        training gives such a run a teacher of its own."""
        return "OFD.FAITHFUL" if cfg.OFD.FAITHFUL else None

    def train(self, mode=True):
        super().train(mode)
        if self.teacher_trains:
            self.teacher.train(mode)
        return self

    def run_teacher(self, views):
        if not self.teacher_trains:
            return super().run_teacher(views)
        with torch.no_grad():  # one pass per view: batch statistics are per view, as the student's
            return [self.teacher(view) for view in self.used_views(views)]

    @classmethod
    def check_cfg(cls, cfg):
        super().check_cfg(cfg)
        check_bool(cfg, "OFD.FAITHFUL")
        kernel = cfg.OFD.CONNECTOR.KERNEL_SIZE
        if kernel < 1 or kernel % 2 == 0:  # odd sizes keep the map's size with "same" padding
            raise ConfigError(f"config key OFD.CONNECTOR.KERNEL_SIZE is {kernel}; use an odd size such as 1 or 3")

    def feature_loss(self, feats_s, feats_t, **kwargs):
        n = self.num_stages
        loss = 0.0
        for i, (conn, f_s, f_t) in enumerate(zip(self.connectors, feats_s["preact_feats"][-n:],
                                                 feats_t["preact_feats"][-n:])):
            f_s = conn(f_s)
            f_t = F.adaptive_avg_pool2d(f_t, f_s.shape[-2:])
            loss = loss + ofd_loss(f_s, f_t, getattr(self, f"margin{i}")) / 2 ** (n - 1 - i)
        return loss
