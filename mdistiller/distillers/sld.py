"""SLD: Limantoro et al. 2025, "Swapped Logit Distillation via Bi-level Teacher Alignment".

Per view (weak and strong, or a single view), summed over `SLD.TEMPERATURES`:
  L_TS = KL(softmax(swap(z_t)/T) || softmax(z_s/T)) * T^2                 teacher swap
  L_SS = KL(softmax(swap(z_s)/T) || softmax(z_s/T)) * T^2, once epoch > GAMMA   student swap
Total: `KD.LOSS.CE_WEIGHT * sum_views CE + KD.LOSS.KD_WEIGHT * (L_TS + L_SS)`, as the authors'
code. Their pseudo-teacher swap(z_s) is not detached (gradient flows through both sides of the
KL); `SLD.DETACH_PSEUDO_TEACHER: True` detaches it.

Ablation switches (the paper's table): `SLD.STUDENT_SWAP: False` = L_TS only; `SLD.GAMMA: 0` =
both terms without scheduling; defaults = full SLD. `SLD.TEACHER_SWAP: False` distils towards
the raw teacher logits instead (multi-temperature KD), to isolate the swap itself.

Variants (our options, not the paper's): `EXPERIMENT.LOGIT_STAND: True` standardizes student and
teacher logits before the swaps (logit_stand.py; swap and standardization commute).
`SLD.SWAP_MODE: rotate` replaces the single exchange of the target and the top logit by a
rotation: the target takes the top value and every class above it moves down one rank, so
the order of the non-target classes is kept (`losses.swap_logits`); it applies to the teacher
and the student swaps; the swap statistics keep describing the official swap.

Loss terms: "loss_ce", "loss_ts", "loss_ss" (zero until epoch > GAMMA; absent when
STUDENT_SWAP is off). The prediction returned for train accuracy is the weak-view student's.

Statistics (logged every epoch, not optimised; `distillers/swap_stats.py`): the teacher's swap
rate and target rank per view and its per-class error, and with STUDENT_SWAP the same rates for
the pseudo-teacher swap(z_s), also before GAMMA (what the swap would do once switched on).
"""
import torch
import torch.nn.functional as F

from .swap_stats import swap_statistics, teacher_statistics
from .base import Distiller
from .cfg_checks import check_bool, check_choice, check_int, check_non_negative, check_temperatures
from .logit_stand import logit_transform
from .losses import SWAP_MODES, kd_loss, swap_logits
from .registry import register


@register("SLD")
class SLD(Distiller):
    """Swapped logit distillation with prediction augmentation and loss scheduling."""
    teacher_logits_only = True  # replayable from a teacher cache (engine/teacher_cache.py)

    views = (1, 2)
    default_views = 2  # DATASET.VIEWS auto: weak + strong, as the SLD authors train it (SOLVER.TRAINER ours)

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        self.check_cfg(cfg)
        self.temperatures = tuple(float(t) for t in cfg.SLD.TEMPERATURES)
        self.gamma = cfg.SLD.GAMMA
        self.teacher_swap = cfg.SLD.TEACHER_SWAP
        self.student_swap = cfg.SLD.STUDENT_SWAP
        self.detach_pseudo_teacher = cfg.SLD.DETACH_PSEUDO_TEACHER
        self.ce_loss_weight = cfg.KD.LOSS.CE_WEIGHT
        self.kd_loss_weight = cfg.KD.LOSS.KD_WEIGHT
        self.swap_mode = cfg.SLD.SWAP_MODE
        self.transform = logit_transform(cfg)

    @classmethod
    def check_cfg(cls, cfg):
        check_temperatures(cfg, "SLD.TEMPERATURES")
        check_int(cfg, "SLD.GAMMA", 0, "the student swap loss starts after this epoch")
        check_bool(cfg, "SLD.TEACHER_SWAP", "SLD.STUDENT_SWAP", "SLD.DETACH_PSEUDO_TEACHER")
        check_non_negative(cfg, "KD.LOSS.CE_WEIGHT", "KD.LOSS.KD_WEIGHT")
        check_choice(cfg, "SLD.SWAP_MODE", SWAP_MODES)

    def student_term_active(self, epoch):
        """Loss scheduling: L_SS joins strictly after epoch GAMMA (epochs count from 1)."""
        return self.student_swap and epoch > self.gamma

    def distill(self, student_outs, teacher_outs, target, epoch=1, **kwargs):
        raw_student = torch.stack([logits for logits, _ in student_outs])  # (V, B, C)
        raw_teacher = torch.stack([logits for logits, _ in teacher_outs])
        student, teacher = self.transform(raw_student), self.transform(raw_teacher)
        targets = [swap_logits(teacher, target, self.swap_mode) if self.teacher_swap else teacher]
        if self.student_term_active(epoch):
            pseudo_teacher = swap_logits(student, target, self.swap_mode)
            targets.append(pseudo_teacher.detach() if self.detach_pseudo_teacher else pseudo_teacher)
        # Every (temperature, target, view) KL in one call: (K, 1, V, B, C) vs (K, n, V, B, C).
        kl = kd_loss(student.unsqueeze(0), torch.stack(targets), self.temperatures)  # (K, n, V)
        per_target = self.kd_loss_weight * kl.sum(dim=(0, 2))
        losses = {
            "loss_ce": self.ce_loss_weight * sum(F.cross_entropy(logits, target) for logits, _ in student_outs),
            "loss_ts": per_target[0],
        }
        self.last_stats = teacher_statistics(raw_teacher, target)  # side channel: engine/stat_sums.py
        if self.student_swap:
            self.last_stats.update(swap_statistics(raw_student, target, "student"))
            losses["loss_ss"] = per_target[1] if len(targets) > 1 else per_target.new_zeros(())
        return student_outs[0][0], losses
