"""Distillers: mdistiller's `distiller_dict[NAME](student, teacher, cfg)` and friends."""
from .base import Distiller, collect_views, split_outputs
from .registry import distiller_dict, get_distiller_class, register

# Importing a module registers its distillers.
from .vanilla import Vanilla  # NONE
from .kd import KD
from .dkd import DKD
from .mlkd import MLKD  # also KD_ours
from .sld import SLD
from .swap import DKDSwap, KDSwap, MLKDSwap, SwappedTeacher
from .build import build_distiller, check_distiller_cfg, teacher_required
