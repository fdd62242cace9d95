"""RKD: "Relational Knowledge Distillation" (Park et al., CVPR 2019)."""
from .cfg_checks import check_non_negative, check_positive
from .feature_base import FeatureDistiller
from .feature_losses import rkd_angle_loss, rkd_distance_loss
from .registry import register


@register("RKD")
class RKD(FeatureDistiller):
    """Matches distance-wise and angle-wise relations among the batch's pooled features."""

    weight_keys = ("RKD.LOSS.CE_WEIGHT", "RKD.LOSS.FEAT_WEIGHT")
    feature_needs = {"pooled_feat": 2}

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher, cfg)
        self.distance_weight = cfg.RKD.DISTANCE_WEIGHT
        self.angle_weight = cfg.RKD.ANGLE_WEIGHT
        self.squared = cfg.RKD.PDIST.SQUARED
        self.eps = cfg.RKD.PDIST.EPSILON

    @classmethod
    def check_cfg(cls, cfg):
        super().check_cfg(cfg)
        check_non_negative(cfg, "RKD.DISTANCE_WEIGHT", "RKD.ANGLE_WEIGHT")
        check_positive(cfg, "RKD.PDIST.EPSILON", 1e-12)

    def feature_loss(self, feats_s, feats_t, **kwargs):
        f_s, f_t = feats_s["pooled_feat"], feats_t["pooled_feat"]
        return (self.distance_weight * rkd_distance_loss(f_s, f_t, self.squared, self.eps)
                + self.angle_weight * rkd_angle_loss(f_s, f_t))
