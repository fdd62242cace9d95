"""The model zoo: mdistiller's registries plus `create_model` / `model_names`.

  cifar_model_dict[name]         = (constructor, default teacher checkpoint path or None)
  tiny_imagenet_model_dict[name] = (constructor, default teacher checkpoint path or None)
  imagenet_model_dict[name]      = constructor

Every model's forward returns `(logits, feats)`; see `common.py` for the feats contract.
"""
from .cifar import cifar_model_dict
from .imagenet import imagenet_model_dict
from .registry import create_model, model_entry, model_names
from .teacher import build_teacher, load_teacher
from .tiny_imagenet import tiny_imagenet_model_dict

__all__ = ["cifar_model_dict", "imagenet_model_dict", "tiny_imagenet_model_dict", "create_model",
           "model_entry", "model_names", "build_teacher", "load_teacher"]
