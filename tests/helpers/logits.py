"""A tiny linear model, configs, distillers and logits for the distiller and loss tests."""
import torch
import torch.nn.functional as F
from torch import nn

from mdistiller.config import get_cfg_defaults
from mdistiller.distillers import distiller_dict


class TinyNet(nn.Module):
    """A model following the contract `(logits, feats)`, with BatchNorm so eval mode matters."""

    def __init__(self, num_classes=5, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.BatchNorm1d(8))
        self.fc = nn.Linear(8, num_classes)
        self.calls = []

    def forward(self, x):
        self.calls.append(x.shape[0])
        pre = self.body(x)
        feat = F.relu(pre)
        return self.fc(feat), {"feats": [feat], "preact_feats": [pre], "pooled_feat": feat}


def cfg_with(**overrides):
    cfg = get_cfg_defaults()
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split("__")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return cfg


def make(name, cfg=None, **overrides):
    cfg = cfg or cfg_with(**overrides)
    return distiller_dict[name](TinyNet(seed=1), TinyNet(seed=2), cfg)


def outs(*logits):
    return [(z, {}) for z in logits]


def random_logits(B=8, C=10, dtype=torch.float64, seed=0, correct_rows=(1, 4)):
    """Student/teacher logits for two views and a target where most rows are wrong and
    `correct_rows` are right for every tensor (so swaps happen and are skipped)."""
    g = torch.Generator().manual_seed(seed)
    z = [torch.randn(B, C, generator=g, dtype=torch.float64) * 2 for _ in range(4)]
    target = torch.randint(0, C, (B,), generator=g)
    for row in correct_rows:
        for t in z:
            t[row, target[row]] = t[row].max() + 1.0
    s_w, s_s, t_w, t_s = (t.to(dtype) for t in z)
    return s_w.requires_grad_(), s_s.requires_grad_(), t_w, t_s, target
