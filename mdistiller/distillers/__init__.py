"""Distillers: mdistiller's `distiller_dict[NAME](student, teacher, cfg)` and friends.

What a configured distiller needs from the data (views, sample indices) is decided in
inputs.py (`input_views`, `needs_index`); the engine builds the loaders from it.
"""
from .drop_in import explain_missing_imports

explain_missing_imports()  # a dropped-in file with a missing import: one line, not a traceback (drop_in.py)

from .base import Distiller, WeakViewOnly, collect_views, is_legacy, split_outputs  # noqa: E402
from .registry import distiller_dict, get_distiller_class, register

# Importing a module registers its distillers.
from .vanilla import Vanilla  # NONE
from .kd import KD
from .dkd import DKD
from .mlkd import MLKD  # also KD_ours
from .sld import SLD
from .swap import DKDSwap, KDSwap, MLKDSwap, SwappedTeacher
from .dist import DIST
# Feature distillers (mdistiller's names) and stacking.
from .fitnet import FitNet  # FITNET
from .at import AT
from .nst import NST
from .pkt import PKT
from .kdsvd import KDSVD
from .ofd import OFD
from .rkd import RKD
from .vid import VID
from .sp import SP
from .crd import CRD
from .reviewkd import ReviewKD  # REVIEWKD
from .stack import Stack
from .build import build_distiller, check_distiller_cfg, teacher_required
from .inputs import distiller_classes, input_views, needs_index
