"""Logit standardization (LS; Sun et al., "Logit Standardization in Knowledge Distillation",
CVPR 2024) as a switch of the logit losses, and the LS repository's command-line mapping.

`EXPERIMENT.LOGIT_STAND: True` (the LS repository's own key) makes a distiller pass its student
and teacher logits through `losses.standardize_logits` before the temperature, where the
authors apply it:
  * KD and DKD: both sides of the loss;
  * MLKD: the instance-level KD terms only; the class- and batch-correlation terms and the
    confidence masks keep the raw logits, as in the authors' MLKD;
  * our extension: SLD (teacher and pseudo-teacher swaps alike: a swap permutes a row, so it
    commutes with standardization), the _SWAP variants, DIST, and so every logit loss of a
    stack (DISTILLER.STACK) — each component reads the same key.

`apply_logit_stand_flags` is `tools/train.py --logit-stand --base-temp T --kd-weight W`, with the
LS repository's mapping: KD and MLKD set KD.TEMPERATURE = T and KD.LOSS.KD_WEIGHT = W; DKD sets
DKD.T = T and multiplies DKD.ALPHA and DKD.BETA by W.
"""
import math

from ..errors import ConfigError
from .losses import standardize_logits

# DISTILLER.TYPE -> the config node its temperature and weight live in (aliases and swapped
# variants read the same keys as their parent).
FLAG_NODES = {"KD": "KD", "MLKD": "KD", "KD_ours": "KD", "KD_SWAP": "KD", "MLKD_SWAP": "KD",
              "DKD": "DKD", "DKD_SWAP": "DKD"}


def _unchanged(logits):
    return logits


def logit_transform(cfg):
    """The function a logit loss applies to student and teacher logits: LS or the identity."""
    return standardize_logits if cfg.EXPERIMENT.LOGIT_STAND else _unchanged


def apply_logit_stand_flags(cfg, base_temp, kd_weight):
    """Switch LS on in the mutable `cfg` and set the method's temperature and weight (module
    docstring). ConfigError for a DISTILLER.TYPE the mapping does not cover."""
    node = FLAG_NODES.get(cfg.DISTILLER.TYPE)
    if node is None:
        raise ConfigError(f"--logit-stand sets the temperature and weight of {', '.join(sorted(FLAG_NODES))}, "
                          f"not of DISTILLER.TYPE {cfg.DISTILLER.TYPE}; set EXPERIMENT.LOGIT_STAND True and "
                          "that method's own keys on the command line instead")
    for name, value in (("--base-temp", base_temp), ("--kd-weight", kd_weight)):
        if not 0 < value < math.inf:
            raise ConfigError(f"{name} is {value}; it must be a positive number, e.g. 2 or 9")
    cfg.EXPERIMENT.LOGIT_STAND = True
    if node == "KD":
        cfg.KD.TEMPERATURE = float(base_temp)
        cfg.KD.LOSS.KD_WEIGHT = float(kd_weight)
    else:
        cfg.DKD.T = float(base_temp)
        cfg.DKD.ALPHA = cfg.DKD.ALPHA * kd_weight
        cfg.DKD.BETA = cfg.DKD.BETA * kd_weight
    return cfg
