"""KDSVD: "Self-supervised Knowledge Distillation Using Singular Value Decomposition" (Lee et al., ECCV 2018)."""
from .cfg_checks import check_bool, check_int
from .feature_base import FeatureDistiller, pairing_error, probe_shapes
from .feature_losses import kdsvd_loss
from .registry import register

# KDSVD.FAITHFUL -> (index in a (C, H, W) shape that must match, its name, the way out)
PAIRING = {
    True: (2, "stage widths", "it compares singular vectors over the width axis; pick a pair with equal "
                              "widths, or set KDSVD.FAITHFUL False (channel space)"),
    False: (0, "stage channels", "it compares singular vectors channel by channel; pick a pair with equal "
                                 "widths, or set KDSVD.FAITHFUL True (mdistiller's width axis)"),
}


@register("KDSVD")
class KDSVD(FeatureDistiller):
    """Matches RBF relations between consecutive stages' top singular vectors (`feats[1:]`).

    KDSVD.FAITHFUL True (default), as mdistiller's port: each NCHW map is decomposed as a
    (C*H) x W matrix, so the singular vectors live over the width axis and student and teacher
    stages need equal widths. KDSVD.FAITHFUL False, as the paper: an (H*W) x C matrix, vectors
    in channel space, equal channel counts needed (and larger SVDs: slower on GPU)."""

    weight_keys = ("KDSVD.LOSS.CE_WEIGHT", "KDSVD.LOSS.FEAT_WEIGHT")

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher, cfg)
        self.k = cfg.KDSVD.K
        self.axis = "width" if cfg.KDSVD.FAITHFUL else "channels"
        t_shapes, s_shapes = probe_shapes(cfg, teacher, student)
        dim, what, fix = PAIRING[cfg.KDSVD.FAITHFUL]
        t_sizes = [shape[dim] for shape in t_shapes["feats"][1:]]
        s_sizes = [shape[dim] for shape in s_shapes["feats"][1:]]
        if t_sizes != s_sizes:
            raise pairing_error(cfg, "KDSVD", what, t_sizes, s_sizes, fix)

    @classmethod
    def check_cfg(cls, cfg):
        super().check_cfg(cfg)
        check_int(cfg, "KDSVD.K", 1, "singular vectors kept per stage")
        check_bool(cfg, "KDSVD.FAITHFUL")

    def feature_loss(self, feats_s, feats_t, **kwargs):
        return kdsvd_loss(feats_s["feats"][1:], feats_t["feats"][1:], self.k, self.axis)
