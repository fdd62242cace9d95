"""PKT: "Learning Deep Representations with Probabilistic Knowledge Transfer" (Passalis & Tefas, ECCV 2018)."""
from .feature_base import FeatureDistiller
from .feature_losses import pkt_loss
from .registry import register


@register("PKT")
class PKT(FeatureDistiller):
    """Matches the batch's cosine-similarity distributions of the pooled features."""

    weight_keys = ("PKT.LOSS.CE_WEIGHT", "PKT.LOSS.FEAT_WEIGHT")
    feature_needs = {"pooled_feat": 2}

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher, cfg)

    def feature_loss(self, feats_s, feats_t, **kwargs):
        return pkt_loss(feats_s["pooled_feat"], feats_t["pooled_feat"])
