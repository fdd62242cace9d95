"""VID: "Variational Information Distillation for Knowledge Transfer" (Ahn et al., CVPR 2019)."""
import torch
from torch import nn

from ..errors import ConfigError
from .cfg_checks import check_bool, check_positive
from .feature_base import FeatureDistiller, check_input_size, probe_shapes
from .feature_losses import match_spatial, vid_log_scale_init, vid_loss
from .registry import register


def mean_regressor(s_channels, t_channels):
    """The Gaussian's mean as a function of the student feature: three 1x1 convolutions."""
    def conv(c_in, c_out):
        return nn.Conv2d(c_in, c_out, kernel_size=1, bias=False)

    return nn.Sequential(conv(s_channels, t_channels), nn.ReLU(), conv(t_channels, t_channels), nn.ReLU(),
                         conv(t_channels, t_channels))


@register("VID")
class VID(FeatureDistiller):
    """Maximises a variational lower bound on the mutual information between student and teacher
    stage features (`feats[1:]`): Gaussian likelihood of the teacher feature with a regressed mean
    and a learned per-channel variance.

    VID.FAITHFUL True (default), as mdistiller's VID: the variances stay at INIT_PRED_VAR (its
    `log_scales` live in a plain list, so they are never trained, saved or counted); here they
    are non-persistent buffers. VID.FAITHFUL False: the variances' parameters (`log_scales`) are
    trained with the student, as in the paper and the authors' code, and saved in checkpoints."""

    weight_keys = ("VID.LOSS.CE_WEIGHT", "VID.LOSS.FEAT_WEIGHT")

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher, cfg)
        self.eps = cfg.VID.EPS
        t_shapes, s_shapes = probe_shapes(cfg, teacher, student, cfg.VID.INPUT_SIZE)
        pairs = [(s[0], t[0]) for s, t in zip(s_shapes["feats"][1:], t_shapes["feats"][1:])]
        self.regressors = nn.ModuleList(mean_regressor(s, t) for s, t in pairs)
        init = vid_log_scale_init(cfg.VID.INIT_PRED_VAR, self.eps)
        self.fixed_variances = cfg.VID.FAITHFUL
        if self.fixed_variances:
            for i, (_, t) in enumerate(pairs):
                self.register_buffer(f"fixed_log_scale{i}", torch.full((t,), init), persistent=False)
        else:
            self.log_scales = nn.ParameterList(nn.Parameter(torch.full((t,), init)) for _, t in pairs)

    def stage_log_scales(self):
        """Per stage, the log-scale whose softplus (+ EPS) is each channel's variance."""
        if self.fixed_variances:
            return [getattr(self, f"fixed_log_scale{i}") for i in range(len(self.regressors))]
        return list(self.log_scales)

    @classmethod
    def check_cfg(cls, cfg):
        super().check_cfg(cfg)
        check_bool(cfg, "VID.FAITHFUL")
        check_positive(cfg, "VID.EPS", 1e-5)
        if not cfg.VID.INIT_PRED_VAR > cfg.VID.EPS:
            raise ConfigError(f"config key VID.INIT_PRED_VAR is {cfg.VID.INIT_PRED_VAR}; it must exceed "
                              f"VID.EPS ({cfg.VID.EPS}), e.g. 5.0")
        check_input_size(cfg, "VID.INPUT_SIZE")

    def feature_loss(self, feats_s, feats_t, **kwargs):
        loss = 0.0
        for regressor, log_scale, f_s, f_t in zip(self.regressors, self.stage_log_scales(),
                                                  feats_s["feats"][1:], feats_t["feats"][1:]):
            f_s, f_t = match_spatial(f_s, f_t)
            loss = loss + vid_loss(regressor(f_s), f_t, log_scale, self.eps)
        return loss
