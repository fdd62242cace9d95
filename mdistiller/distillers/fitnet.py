"""FitNet: "FitNets: Hints for Thin Deep Nets" (Romero et al., ICLR 2015)."""
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .cfg_checks import check_int
from .feature_base import FeatureDistiller, check_input_size, pairing_error, probe_shapes
from .registry import register


class ConvRegressor(nn.Module):
    """Maps a student feature map onto the teacher's shape: conv (or transposed conv when the
    student map is half the teacher's size) -> BatchNorm -> ReLU. The layer chosen per size
    ratio is mdistiller's, so its FitNet numbers stay comparable."""

    def __init__(self, s_shape, t_shape):
        super().__init__()
        (s_c, s_h, s_w), (t_c, t_h, t_w) = s_shape, t_shape
        if s_h == 2 * t_h:
            conv = nn.Conv2d(s_c, t_c, kernel_size=3, stride=2, padding=1)
        elif 2 * s_h == t_h:
            conv = nn.ConvTranspose2d(s_c, t_c, kernel_size=4, stride=2, padding=1)
        elif s_h >= t_h:  # a valid convolution shrinks the map by exactly the difference
            conv = nn.Conv2d(s_c, t_c, kernel_size=(1 + s_h - t_h, 1 + s_w - t_w))
        else:
            raise ValueError(f"no regressor from a {s_h}x{s_w} map to a {t_h}x{t_w} map")
        self.conv, self.bn = conv, nn.BatchNorm2d(t_c)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


@register("FITNET")
class FitNet(FeatureDistiller):
    """Regresses the teacher's hint stage `feats[HINT_LAYER]` from the student's same stage (MSE)."""

    weight_keys = ("FITNET.LOSS.CE_WEIGHT", "FITNET.LOSS.FEAT_WEIGHT")

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher, cfg)
        self.hint_layer = cfg.FITNET.HINT_LAYER
        t_shapes, s_shapes = probe_shapes(cfg, teacher, student, cfg.FITNET.INPUT_SIZE)
        stages = min(len(t_shapes["feats"]), len(s_shapes["feats"]))
        if self.hint_layer >= stages:
            raise ConfigError(f"config key FITNET.HINT_LAYER is {self.hint_layer}; this pair has stage "
                              f"features 0..{stages - 1}")
        t_shape, s_shape = t_shapes["feats"][self.hint_layer], s_shapes["feats"][self.hint_layer]
        try:
            self.conv_reg = ConvRegressor(s_shape, t_shape)
        except ValueError:
            raise pairing_error(cfg, "FITNET", f"hint shape (feats[{self.hint_layer}])", t_shape,
                                s_shape, "the student map must not be smaller than the teacher's unless "
                                "exactly half; choose another FITNET.HINT_LAYER") from None

    @classmethod
    def check_cfg(cls, cfg):
        super().check_cfg(cfg)
        check_int(cfg, "FITNET.HINT_LAYER", 0, "index into the stage features, 0 = stem")
        check_input_size(cfg, "FITNET.INPUT_SIZE")

    def feature_loss(self, feats_s, feats_t, **kwargs):
        i = self.hint_layer
        return F.mse_loss(self.conv_reg(feats_s["feats"][i]), feats_t["feats"][i])
