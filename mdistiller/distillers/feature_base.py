"""The step every feature distiller shares: weighted CE plus one weighted feature term.

A method names its two weight keys (`weight_keys`) and says how its feature term is computed
from one view's student and teacher `feats` dicts (`feature_loss`); this class applies it to
the views in use and returns mdistiller's term names, `loss_ce` and `loss_kd` (the DOT trainer
splits on exactly these).

Views: feature methods accept one view or two. With two views (e.g. stacked onto SLD) the
terms use the weak view only, unless DISTILLER.FEATURE_VIEWS is "all" (then every view's terms
are added). Run on its own with two views and FEATURE_VIEWS "weak", a feature distiller does
not even run the strong view: the student's BatchNorm would learn statistics of images no loss
sees. The returned logits are always the weak view's.
"""
import torch.nn.functional as F

from ..errors import ConfigError
from .base import Distiller
from .cfg_checks import cfg_value, check_non_negative
from .registry import registered_name
from .shapes import feature_shapes, input_size_for


class FeatureDistiller(Distiller):
    views = (1, 2)
    weight_keys = ()  # (CE weight key, feature weight key), e.g. ("AT.LOSS.CE_WEIGHT", "AT.LOSS.FEAT_WEIGHT")
    # What the method reads of both models' feats: key -> dimensions of each tensor (batch
    # included), None = any. Checked at start-up: a model outside the zoo may lack some.
    feature_needs = {"feats": 4}

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        self.check_cfg(cfg)
        check_feature_needs(cfg, type(self), teacher, student)
        self.ce_weight, self.feat_weight = (cfg_value(cfg, key) for key in self.weight_keys)
        self.all_views = cfg.DISTILLER.FEATURE_VIEWS == "all"

    @classmethod
    def check_cfg(cls, cfg):
        check_non_negative(cfg, *cls.weight_keys)

    def used_views(self, views):
        return views if self.all_views else views[:1]

    def teacher_views(self, n):
        return tuple(self.used_views(range(n)))

    def run_student(self, views):
        return super().run_student(self.used_views(views))

    def feature_loss(self, feats_s, feats_t, epoch=1, **kwargs):
        """The unweighted feature term for one view; `feats_*` are the models' feats dicts."""
        raise NotImplementedError

    def distill(self, student_outs, teacher_outs, target, epoch=1, **kwargs):
        pairs = self.used_views(list(zip(student_outs, teacher_outs)))
        loss_ce = sum(F.cross_entropy(s_logits, target) for (s_logits, _), _ in pairs)
        loss_kd = sum(self.feature_loss(s_feats, t_feats, epoch=epoch, **kwargs)
                      for (_, s_feats), (_, t_feats) in pairs)
        return student_outs[0][0], {"loss_ce": self.ce_weight * loss_ce, "loss_kd": self.feat_weight * loss_kd}


def check_input_size(cfg, key):
    value = cfg_value(cfg, key)
    if len(value) != 2 or not all(isinstance(v, int) and v > 0 for v in value):
        raise ConfigError(f"config key {key} is {list(value)}; give the training resolution as [H, W], e.g. [32, 32]")


def probe_shapes(cfg, teacher, student, input_size=None):
    """Feature shapes (see shapes.feature_shapes) of teacher and student at the training size."""
    size = tuple(input_size or input_size_for(cfg) or (32, 32))
    return feature_shapes(teacher, size), feature_shapes(student, size)


def pairing_error(cfg, method, what, t_values, s_values, fix):
    """The one-line ConfigError for a teacher/student feature mismatch a method cannot bridge."""
    return ConfigError(f"{method} cannot pair teacher {cfg.DISTILLER.TEACHER} {what} {list(t_values)} with "
                       f"student {cfg.DISTILLER.STUDENT} {what} {list(s_values)}; {fix}")


FEATURE_WORDS = {"feats": "stage features (feats)", "preact_feats": "pre-activation stage features (preact_feats)",
                 "pooled_feat": "a pooled feature vector (pooled_feat)"}


def _missing_feature(shapes, key, dims):
    """Why `shapes` (shapes.feature_shapes) cannot serve `key` with `dims`-D tensors, or None."""
    if key not in shapes or not shapes[key]:
        return "gives none"
    found = {len(s) + 1 for s in (shapes[key] if isinstance(shapes[key], list) else [shapes[key]])}
    if dims is not None and found != {dims}:
        return f"gives {'/'.join(str(d) for d in sorted(found))}-D tensors"
    return None


def check_feature_needs(cfg, cls, teacher, student):
    """One-line ConfigError when a model lacks a feature `cls` reads (its `feature_needs`,
    or `feature_needs_of(cfg, role)` when a method's needs differ by role). Only models that
    say they may lack some (`may_lack_features`: the adapter for timm/torchvision/user models)
    are probed; zoo models give every feature."""
    size = input_size_for(cfg) or (32, 32)
    for role, model in (("teacher", teacher), ("student", student)):
        if not getattr(model, "may_lack_features", False):
            continue
        shapes = feature_shapes(model, size)
        needs = cls.feature_needs_of(cfg, role) if hasattr(cls, "feature_needs_of") else cls.feature_needs
        for key, dims in needs.items():
            problem = _missing_feature(shapes, key, dims)
            if problem:
                kind = f"{dims}-D " if dims else ""
                raise ConfigError(f"{registered_name(cls)} needs {kind}{FEATURE_WORDS[key]} from the {role} "
                                  f"{cfg.DISTILLER[role.upper()]}, which {problem}; use a logit method "
                                  f"(KD, DKD, SLD) or another {role}")
