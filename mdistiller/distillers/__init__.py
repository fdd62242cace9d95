"""Distillers: mdistiller's `distiller_dict[NAME](student, teacher, cfg)` and friends."""
from .base import Distiller, collect_views, split_outputs
from .registry import distiller_dict, get_distiller_class, register

# Importing a module registers its distillers.
