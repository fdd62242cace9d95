"""CRD: "Contrastive Representation Distillation" (Tian et al., ICLR 2020)."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .cfg_checks import check_int, check_positive
from .feature_base import FeatureDistiller, probe_shapes
from .feature_losses import crd_nce_loss, memory_update
from .registry import register


class Embed(nn.Module):
    """Linear projection to the shared embedding space, then L2 normalisation."""

    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x):
        return F.normalize(self.linear(x.flatten(1)), dim=1)


class ContrastMemory(nn.Module):
    """Two memory banks of past embeddings, one row per training sample (student's and
    teacher's), supplying the many negatives that make the contrastive bound tight.

    Scores exp(<memory row, embedding> / T) are divided by a constant Z per direction, estimated
    once from the first batch as mean score x num_data (so the scores approximate probabilities)
    and kept in the buffer `z` (saved with checkpoints). After scoring, each sample's own rows
    move towards its new embeddings with `feature_losses.memory_update`."""

    def __init__(self, dim, num_data, temperature, momentum):
        super().__init__()
        self.temperature, self.momentum = temperature, momentum
        bound = 1.0 / math.sqrt(dim / 3)  # uniform init whose rows have roughly unit norm
        self.register_buffer("memory_s", torch.rand(num_data, dim).mul_(2 * bound).sub_(bound))
        self.register_buffer("memory_t", torch.rand(num_data, dim).mul_(2 * bound).sub_(bound))
        self.register_buffer("z", torch.full((2,), -1.0))  # [student side, teacher side]; < 0: not set

    @property
    def num_data(self):
        return self.memory_s.shape[0]

    def scores(self, memory, embedding, contrastive_index, side):
        rows = memory[contrastive_index].detach()  # (B, K + 1, dim); column 0: the sample itself
        out = torch.exp(torch.bmm(rows, embedding.unsqueeze(2)).squeeze(2) / self.temperature)
        # Z is set on the first call (z < 0) and kept after; decided on the device, as an `if` on
        # z would make the host wait for the GPU every step.
        z = self.z[side]
        self.z[side] = torch.where(z < 0, out.detach().mean() * self.num_data, z)
        return out / self.z[side].clone()  # a copy: the other side's first call writes into z

    def forward(self, v_s, v_t, index, contrastive_index):
        """Scores of the student embedding against the teacher bank and vice versa, then the update."""
        out_s = self.scores(self.memory_t, v_s, contrastive_index, 0)
        out_t = self.scores(self.memory_s, v_t, contrastive_index, 1)
        with torch.no_grad():
            self.memory_s[index] = memory_update(self.memory_s[index], v_s.detach(), self.momentum)
            self.memory_t[index] = memory_update(self.memory_t[index], v_t.detach(), self.momentum)
        return out_s, out_t


def check_dims(cfg, t_dim, s_dim):
    """ConfigError naming each of CRD.FEAT.TEACHER_DIM / STUDENT_DIM whose configured value is not
    the size of that model's pooled feature (the embeddings' input sizes)."""
    wrong = [(f"CRD.FEAT.{role.upper()}_DIM", configured, actual, f"{role} {cfg.DISTILLER[role.upper()]}")
             for role, configured, actual in (("teacher", cfg.CRD.FEAT.TEACHER_DIM, t_dim),
                                              ("student", cfg.CRD.FEAT.STUDENT_DIM, s_dim)) if configured != actual]
    if wrong:
        found = " and ".join(f"config key {key} is {configured}, but the {model}'s pooled feature has size {actual}"
                             for key, configured, actual, model in wrong)
        raise ConfigError(f"CRD: {found}; set " + " and ".join(f"{key} {actual}" for key, _, actual, _ in wrong))


@register("CRD")
class CRD(FeatureDistiller):
    """Contrasts the pooled features' embeddings: a student embedding should score high with its
    own sample's teacher embedding and low with K other samples' (from the memory bank).

    Needs the data pipeline's CRD variant: each batch carries `index` (B,) and `contrastive_index`
    (B, K + 1) whose column 0 is the sample's own index (DATASET.INDICES). Constructor:
    `CRD(student, teacher, cfg, num_data)` as in mdistiller (num_data = training-set size)."""

    weight_keys = ("CRD.LOSS.CE_WEIGHT", "CRD.LOSS.FEAT_WEIGHT")
    feature_needs = {"pooled_feat": 2}

    needs_index = True

    def __init__(self, student, teacher, cfg, num_data):
        super().__init__(student, teacher, cfg)
        feat = cfg.CRD.FEAT
        t_shapes, s_shapes = probe_shapes(cfg, teacher, student)
        t_dim, s_dim = t_shapes["pooled_feat"][0], s_shapes["pooled_feat"][0]
        check_dims(cfg, t_dim, s_dim)
        self.embed_s = Embed(s_dim, feat.DIM)
        self.embed_t = Embed(t_dim, feat.DIM)
        self.contrast = ContrastMemory(feat.DIM, num_data, cfg.CRD.NCE.TEMPERATURE, cfg.CRD.NCE.MOMENTUM)

    @classmethod
    def check_cfg(cls, cfg):
        super().check_cfg(cfg)
        if cfg.DISTILLER.FEATURE_VIEWS != "weak":
            raise ConfigError("CRD keeps one memory-bank row per sample and updates it once per step; "
                              "set DISTILLER.FEATURE_VIEWS to weak")
        check_int(cfg, "CRD.FEAT.DIM", 1, "embedding size")
        check_positive(cfg, "CRD.NCE.TEMPERATURE", 0.07)
        if not 0 <= cfg.CRD.NCE.MOMENTUM < 1:
            raise ConfigError(f"config key CRD.NCE.MOMENTUM is {cfg.CRD.NCE.MOMENTUM}; it must be in [0, 1), e.g. 0.5")

    def feature_loss(self, feats_s, feats_t, index=None, contrastive_index=None, **kwargs):
        if index is None or contrastive_index is None:
            raise ConfigError("CRD needs index and contrastive_index in every batch; set DATASET.INDICES auto (or True)")
        v_s = self.embed_s(feats_s["pooled_feat"])
        v_t = self.embed_t(feats_t["pooled_feat"])
        out_s, out_t = self.contrast(v_s, v_t, index, contrastive_index)
        num_data = self.contrast.num_data
        return crd_nce_loss(out_s, num_data) + crd_nce_loss(out_t, num_data)
