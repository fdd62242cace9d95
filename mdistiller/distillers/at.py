"""AT: "Paying More Attention to Attention" (Zagoruyko & Komodakis, ICLR 2017)."""
from .cfg_checks import check_positive
from .feature_base import FeatureDistiller
from .feature_losses import at_loss
from .registry import register


@register("AT")
class AT(FeatureDistiller):
    """Matches normalised spatial attention maps of every stage after the stem (`feats[1:]`)."""

    weight_keys = ("AT.LOSS.CE_WEIGHT", "AT.LOSS.FEAT_WEIGHT")

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher, cfg)
        self.p = cfg.AT.P

    @classmethod
    def check_cfg(cls, cfg):
        super().check_cfg(cfg)
        check_positive(cfg, "AT.P", 2)

    def feature_loss(self, feats_s, feats_t, **kwargs):
        return sum(at_loss(f_s, f_t, self.p) for f_s, f_t in zip(feats_s["feats"][1:], feats_t["feats"][1:]))
