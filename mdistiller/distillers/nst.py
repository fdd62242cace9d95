"""NST: "Like What You Like: Knowledge Distill via Neuron Selectivity Transfer" (Huang & Wang, 2017)."""
from .feature_base import FeatureDistiller
from .feature_losses import nst_loss
from .registry import register


@register("NST")
class NST(FeatureDistiller):
    """Matches the distributions of channel activation maps (MMD, polynomial kernel) per stage."""

    weight_keys = ("NST.LOSS.CE_WEIGHT", "NST.LOSS.FEAT_WEIGHT")

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher, cfg)

    def feature_loss(self, feats_s, feats_t, **kwargs):
        return sum(nst_loss(f_s, f_t) for f_s, f_t in zip(feats_s["feats"][1:], feats_t["feats"][1:]))
