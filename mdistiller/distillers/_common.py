"""mdistiller's `mdistiller/distillers/_common.py` names: `ConvReg` and `get_feat_shapes`, for
distiller files written for mdistiller (`from ._common import ConvReg, get_feat_shapes`)."""
import torch
import torch.nn.functional as F

from .fitnet import ConvRegressor


class ConvReg(ConvRegressor):
    """mdistiller's convolutional regressor: `ConvReg(s_shape, t_shape, use_relu=True)` with
    (N, C, H, W) shapes as `get_feat_shapes` returns them; conv -> BatchNorm (-> ReLU)."""

    def __init__(self, s_shape, t_shape, use_relu=True):
        super().__init__(tuple(s_shape)[-3:], tuple(t_shape)[-3:])
        self.use_relu = use_relu

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.relu(x) if self.use_relu else x


def get_feat_shapes(student, teacher, input_size):
    """(student shapes, teacher shapes) of `feats["feats"]`, as torch.Size (1, C, H, W) lists.

    As in mdistiller: one forward of a random (1, 3, H, W) image without gradient, each model
    in the mode it is in. A freshly built model is in train mode, so its BatchNorm running
    statistics take one step towards that image's; mdistiller's FitNet and VID numbers include
    this. (Our built-in distillers probe in eval mode instead, see shapes.py.)"""
    data = torch.randn(1, 3, *input_size)
    with torch.no_grad():
        _, feat_s = student(data.to(_device_of(student)))
        _, feat_t = teacher(data.to(_device_of(teacher)))
    return [f.shape for f in feat_s["feats"]], [f.shape for f in feat_t["feats"]]


def _device_of(model):
    return next(model.parameters(), torch.zeros(())).device
