"""SP: "Similarity-Preserving Knowledge Distillation" (Tung & Mori, ICCV 2019)."""
from .feature_base import FeatureDistiller
from .feature_losses import sp_loss
from .registry import register


@register("SP")
class SP(FeatureDistiller):
    """Matches the batch similarity (Gram) matrices of the last stage's features."""

    weight_keys = ("SP.LOSS.CE_WEIGHT", "SP.LOSS.FEAT_WEIGHT")
    feature_needs = {"feats": None}  # similarity of flattened last features: any shape

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher, cfg)

    def feature_loss(self, feats_s, feats_t, **kwargs):
        return sp_loss(feats_s["feats"][-1], feats_t["feats"][-1])
