"""MLKD: Jin et al. 2023, "Multi-Level Logit Distillation" — as officially coded by default.

Registered as `MLKD` (SLD authors' repo) and `KD_ours` (MLKD authors' repo). Two views (weak,
strong); temperatures `[KD.TEMPERATURE, 3, 5, 2, 6]`; weights `KD.LOSS.CE_WEIGHT/KD_WEIGHT`.
Masks come from the weak teacher view (`losses.confidence_masks`).

Official loss (`MLKD.FAITHFUL: True`, default), all distillation terms times KD_WEIGHT:
  loss_kd = sum_T kd(s_w, t_w, T) * frac(sample_mask)                      quirk 1
          + kd(s_s, t_s, T) for the first three temperatures
          + kd(s_w, t_w, T) for the last two (T = 2 and 6)                  quirk 2
  loss_cc = sum_T cc(s_w, t_w, T) * frac(class_mask)                         quirk 1
  loss_bc = sum_T bc(s_w, t_w, T) * frac(sample_mask)                        quirk 1
Quirk 1: the code multiplies a batch-averaged scalar by the boolean mask and averages, i.e. it
scales by the fraction of kept samples/classes instead of weighting each one. Quirk 2: the
"strong" sum reads the weak logits at its last two temperatures. Quirk 3: the strong-view
class/batch terms are computed and thrown away, so they are absent here.

Corrected variant (`MLKD.FAITHFUL: False`): masks weight each sample (kd, bc) or class column
(cc) before averaging, with the same normalisation (all-ones masks give the unmasked loss);
the strong kd sum uses the strong logits at every temperature; strong cc (unmasked, like the
strong kd) and strong bc (sample-masked, like the official strong bc) are added.

`EXPERIMENT.LOGIT_STAND` standardizes the logits of the kd terms only, as the LS authors' MLKD:
the cc/bc terms and the masks keep the raw logits (logit_stand.py).
"""
import torch.nn.functional as F

from .base import Distiller
from .cfg_checks import check_bool, check_non_negative, check_positive
from .logit_stand import logit_transform
from .losses import batch_correlation_loss, class_correlation_loss, confidence_masks, kd_loss
from .registry import register

EXTRA_TEMPERATURES = (3.0, 5.0, 2.0, 6.0)  # after KD.TEMPERATURE, in the official order
OFFICIAL_STRONG_KD_TERMS = 3  # the official strong kd sum uses strong logits for the first 3 only


@register("MLKD", "KD_ours")
class MLKD(Distiller):
    """Multi-level (instance, class, batch) logit distillation over two views."""
    teacher_logits_only = True  # replayable from a teacher cache (engine/teacher_cache.py)

    views = (2,)

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        self.check_cfg(cfg)
        self.temperatures = (float(cfg.KD.TEMPERATURE),) + EXTRA_TEMPERATURES
        self.ce_loss_weight = cfg.KD.LOSS.CE_WEIGHT
        self.kd_loss_weight = cfg.KD.LOSS.KD_WEIGHT
        self.faithful = cfg.MLKD.FAITHFUL
        self.transform = logit_transform(cfg)

    @classmethod
    def check_cfg(cls, cfg):
        check_positive(cfg, "KD.TEMPERATURE", 4)
        check_non_negative(cfg, "KD.LOSS.CE_WEIGHT", "KD.LOSS.KD_WEIGHT")
        check_bool(cfg, "MLKD.FAITHFUL")

    def distill(self, student_outs, teacher_outs, target, epoch=1, **kwargs):
        (s_weak, _), (s_strong, _) = student_outs
        (t_weak, _), (t_strong, _) = teacher_outs
        sample_mask, class_mask = confidence_masks(t_weak)
        terms = (self._official_terms if self.faithful else self._corrected_terms)(
            s_weak, s_strong, t_weak, t_strong, sample_mask, class_mask)
        losses = {"loss_ce": self.ce_loss_weight * (F.cross_entropy(s_weak, target)
                                                    + F.cross_entropy(s_strong, target))}
        losses.update({name: self.kd_loss_weight * value for name, value in terms.items()})
        return s_weak, losses

    def _kd(self, s, t, temperatures, **kwargs):
        """The instance-level term, the only one logit standardization applies to."""
        return kd_loss(self.transform(s), self.transform(t), temperatures, **kwargs)

    def _official_terms(self, s_weak, s_strong, t_weak, t_strong, sample_mask, class_mask):
        Ts = self.temperatures
        kd_weak = self._kd(s_weak, t_weak, Ts)  # (K,)
        kd_strong = self._kd(s_strong, t_strong, Ts[:OFFICIAL_STRONG_KD_TERMS])
        sample_fraction = sample_mask.to(kd_weak.dtype).mean()
        class_fraction = class_mask.to(kd_weak.dtype).mean()
        return {
            "loss_kd": kd_weak.sum() * sample_fraction + kd_strong.sum()
                       + kd_weak[OFFICIAL_STRONG_KD_TERMS:].sum(),
            "loss_cc": class_correlation_loss(s_weak, t_weak, Ts).sum() * class_fraction,
            "loss_bc": batch_correlation_loss(s_weak, t_weak, Ts).sum() * sample_fraction,
        }

    def _corrected_terms(self, s_weak, s_strong, t_weak, t_strong, sample_mask, class_mask):
        Ts = self.temperatures
        sample_w = sample_mask.to(s_weak.dtype)
        class_w = class_mask.to(s_weak.dtype)
        return {
            "loss_kd": self._kd(s_weak, t_weak, Ts, sample_weights=sample_w).sum()
                       + self._kd(s_strong, t_strong, Ts).sum(),
            "loss_cc": class_correlation_loss(s_weak, t_weak, Ts, class_weights=class_w).sum()
                       + class_correlation_loss(s_strong, t_strong, Ts).sum(),
            "loss_bc": batch_correlation_loss(s_weak, t_weak, Ts, sample_weights=sample_w).sum()
                       + batch_correlation_loss(s_strong, t_strong, Ts, sample_weights=sample_w).sum(),
        }
