"""mdistiller's `mdistiller.dataset.imagenet.get_imagenet_val_loader`, for its tools/eval.py."""
from ..data import build_loaders
from ..engine.cfg import CFG
from ..engine.device import resolve_device
from ..engine.upstream import exits_on_user_error, script_cfg


@exits_on_user_error
def get_imagenet_val_loader(val_batch_size, use_ddp=False, mean=None, std=None):
    """The ImageNet validation loader (DATASET.ROOT of the scripts' config, our normalisation;
    `use_ddp`, `mean` and `std` are accepted for mdistiller's signature)."""
    cfg = CFG.clone()
    cfg.defrost()
    cfg.DATASET.TYPE = "imagenet"
    cfg.DATASET.TEST.BATCH_SIZE = val_batch_size
    cfg = script_cfg(cfg)
    return build_loaders(cfg, 1, device=resolve_device(cfg.DEVICE))[1]
