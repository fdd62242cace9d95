"""KDSVD: "Self-supervised Knowledge Distillation Using Singular Value Decomposition" (Lee et al., ECCV 2018)."""
from .cfg_checks import check_int
from .feature_base import FeatureDistiller, pairing_error, probe_shapes
from .feature_losses import kdsvd_loss
from .registry import register


@register("KDSVD")
class KDSVD(FeatureDistiller):
    """Matches RBF relations between consecutive stages' top singular vectors (`feats[1:]`).

    Singular vectors live in channel space, as in the paper (a map is an (H*W) x C matrix), so
    student and teacher stages need equal channel counts. mdistiller's port reshapes NCHW maps
    to (C*H) x W instead, i.e. decomposes over the width axis; we follow the paper."""

    weight_keys = ("KDSVD.LOSS.CE_WEIGHT", "KDSVD.LOSS.FEAT_WEIGHT")

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher, cfg)
        self.k = cfg.KDSVD.K
        t_shapes, s_shapes = probe_shapes(cfg, teacher, student)
        t_channels = [shape[0] for shape in t_shapes["feats"][1:]]
        s_channels = [shape[0] for shape in s_shapes["feats"][1:]]
        if t_channels != s_channels:
            raise pairing_error(cfg, "KDSVD", "stage channels", t_channels, s_channels,
                                "it compares singular vectors channel by channel; pick a pair with equal widths")

    @classmethod
    def check_cfg(cls, cfg):
        super().check_cfg(cfg)
        check_int(cfg, "KDSVD.K", 1, "singular vectors kept per stage")

    def feature_loss(self, feats_s, feats_t, **kwargs):
        return kdsvd_loss(feats_s["feats"][1:], feats_t["feats"][1:], self.k)
