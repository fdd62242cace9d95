"""ReviewKD: "Distilling Knowledge via Knowledge Review" (Chen et al., CVPR 2021)."""
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .cfg_checks import check_int
from .feature_base import FeatureDistiller, pairing_error, probe_shapes
from .feature_losses import hcl_loss
from .registry import register
from .shapes import input_size_for


class ABF(nn.Module):
    """Attention-based fusion: projects one student stage to `mid` channels and, except at the
    deepest level, blends it with the review path coming from the deeper level using two
    per-pixel attention weights; then maps the result to the teacher's channels.

    forward returns (output matched to the teacher stage, fused map passed to the next level)."""

    def __init__(self, in_channels, mid_channels, out_channels, fuse):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 1, bias=False), nn.BatchNorm2d(mid_channels))
        self.conv2 = nn.Sequential(nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(out_channels))
        self.att_conv = nn.Sequential(nn.Conv2d(2 * mid_channels, 2, 1), nn.Sigmoid()) if fuse else None
        for conv in (self.conv1[0], self.conv2[0]):
            nn.init.kaiming_uniform_(conv.weight, a=1)

    def forward(self, x, residual=None, out_size=None):
        x = self.conv1(x)
        if self.att_conv is not None:
            residual = F.interpolate(residual, size=x.shape[-2:], mode="nearest")
            att = self.att_conv(torch.cat([x, residual], dim=1))
            x = x * att[:, :1] + residual * att[:, 1:]
        if out_size is not None and x.shape[-1] != out_size:
            x = F.interpolate(x, size=(out_size, out_size), mode="nearest")
        return self.conv2(x), x


def review_levels(feats, preact=False):
    """Stage features after the stem plus the pooled feature as a 1x1 map, shallowest first."""
    stages = feats["preact_feats" if preact else "feats"][1:]
    return list(stages) + [feats["pooled_feat"][:, :, None, None]]


@register("REVIEWKD")
class ReviewKD(FeatureDistiller):
    """Each student level, fused top-down with all deeper levels through ABFs, is matched to the
    same-level teacher feature (pre-activation stages + pooled feature) with the hierarchical
    context loss; the review term ramps up linearly over WARMUP_EPOCHS epochs.

    REVIEWKD.IN_CHANNELS / OUT_CHANNELS list student / teacher channels shallowest first;
    SHAPES / OUT_SHAPES list their spatial sizes deepest first (mdistiller's convention)."""

    weight_keys = ("REVIEWKD.CE_WEIGHT", "REVIEWKD.REVIEWKD_WEIGHT")

    def __init__(self, student, teacher, cfg):
        c = cfg.REVIEWKD
        super().__init__(student, teacher, cfg)
        self.stu_preact, self.warmup = c.STU_PREACT, c.WARMUP_EPOCHS
        self.out_shapes = list(c.OUT_SHAPES)
        self.check_pair(cfg, teacher, student)
        mid = min(c.MAX_MID_CHANNEL, c.IN_CHANNELS[-1])
        last = len(c.IN_CHANNELS) - 1
        self.abfs = nn.ModuleList(ABF(c_in, mid, c_out, fuse=i < last)
                                  for i, (c_in, c_out) in enumerate(zip(c.IN_CHANNELS, c.OUT_CHANNELS)))

    @classmethod
    def feature_needs_of(cls, cfg, role):
        stages = "preact_feats" if role == "teacher" or cfg.REVIEWKD.STU_PREACT else "feats"
        return {stages: 4, "pooled_feat": 2}

    @classmethod
    def check_cfg(cls, cfg):
        super().check_cfg(cfg)
        check_int(cfg, "REVIEWKD.WARMUP_EPOCHS", 0, "epochs of linear ramp-up, 0 = none")
        check_int(cfg, "REVIEWKD.MAX_MID_CHANNEL", 1, "cap on the fusion channels")

    @staticmethod
    def check_pair(cfg, teacher, student):
        """The config's channel and size lists must describe the actual feature maps."""
        c = cfg.REVIEWKD
        t_shapes, s_shapes = probe_shapes(cfg, teacher, student)
        t_levels = t_shapes["preact_feats"][1:] + [t_shapes["pooled_feat"] + (1, 1)]
        s_levels = s_shapes["preact_feats" if c.STU_PREACT else "feats"][1:] + [s_shapes["pooled_feat"] + (1, 1)]
        expected = {
            "IN_CHANNELS": [s[0] for s in s_levels], "OUT_CHANNELS": [t[0] for t in t_levels],
            "SHAPES": [s[1] for s in s_levels][::-1], "OUT_SHAPES": [t[1] for t in t_levels][::-1],
        }
        lengths = {len(c.IN_CHANNELS), len(c.OUT_CHANNELS), len(c.SHAPES), len(c.OUT_SHAPES)}
        if len(t_levels) != len(s_levels):
            raise pairing_error(cfg, "REVIEWKD", "levels", expected["OUT_CHANNELS"],
                                expected["IN_CHANNELS"], "it needs the same number of stages in both models")
        if lengths != {len(s_levels)}:
            raise ConfigError(f"config keys REVIEWKD.IN_CHANNELS/OUT_CHANNELS/SHAPES/OUT_SHAPES need {len(s_levels)} "
                              f"entries each for this pair; set them to {expected}")
        if input_size_for(cfg) is not None:
            wrong = {key: value for key, value in expected.items() if list(c[key]) != value}
        else:  # spatial sizes depend on the data's resolution; check only the channels
            wrong = {key: expected[key] for key in ("IN_CHANNELS", "OUT_CHANNELS") if list(c[key]) != expected[key]}
        if wrong:
            key, value = next(iter(wrong.items()))
            raise ConfigError(f"config key REVIEWKD.{key} is {list(c[key])} but this pair needs {value}; set it so")

    def review(self, feats_s):
        """Student levels fused deepest-first; returns outputs shallowest first."""
        levels = review_levels(feats_s, self.stu_preact)[::-1]
        outputs, residual = [], None
        for x, abf, out_size in zip(levels, reversed(self.abfs), self.out_shapes):
            out, residual = abf(x, residual, out_size)
            outputs.insert(0, out)
        return outputs

    def feature_loss(self, feats_s, feats_t, epoch=1, **kwargs):
        ramp = min(epoch / self.warmup, 1.0) if self.warmup > 0 else 1.0
        pairs = zip(self.review(feats_s), review_levels(feats_t, preact=True))
        return ramp * sum(hcl_loss(f_s, f_t) for f_s, f_t in pairs)
