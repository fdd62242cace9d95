"""The model zoo: mdistiller's registries plus `create_model` / `model_names`.

  cifar_model_dict[name]         = (constructor, default teacher checkpoint path or None)
  tiny_imagenet_model_dict[name] = (constructor, default teacher checkpoint path or None)
  imagenet_model_dict[name]      = constructor

Every model's forward returns `(logits, feats)`; see `common.py` for the feats contract. Names
with a colon (timm:<name>, torchvision:<name>, package.module:callable) build models from outside
the zoo, wrapped for the same contract (external.py, adapter.py).
"""
from .cifar import cifar_model_dict
from .imagenet import imagenet_model_dict
from .registry import check_model, check_model_names, create_model, model_entry, model_names, model_settings
from .teacher import build_teacher, load_teacher
from .tiny_imagenet import tiny_imagenet_model_dict

__all__ = ["cifar_model_dict", "imagenet_model_dict", "tiny_imagenet_model_dict", "create_model", "check_model",
           "check_model_names",
           "model_entry", "model_names", "model_settings", "build_teacher", "load_teacher"]
