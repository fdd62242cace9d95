"""mdistiller's `mdistiller.dataset`, for training and evaluation scripts written for mdistiller
and its forks: `get_dataset(cfg)` and `get_dataset_strong(cfg)` (MLKD, SLD, logit
standardization) return `(train_loader, val_loader, num_data, num_classes)`, built by our data
pipeline (mdistiller.data: every DATASET key, the fast loader, seeded streams that resume
exactly). The config decides what a batch carries, as for tools/train.py: SOLVER.TRAINER (and
DATASET.VIEWS / INDICES) and the distiller, so the loaders always fit the trainer the script
then takes from `trainer_dict[cfg.SOLVER.TRAINER]`. `get_dataset_strong` asks for weak + strong
views and refuses, in one line, a config that trains on one.
"""
from ..data import build_loaders
from ..distillers.inputs import input_views, needs_index
from ..engine.device import resolve_device
from ..engine.seeding import seed_everything
from ..engine.upstream import exits_on_user_error, script_cfg
from ..errors import ConfigError

__all__ = ["get_dataset", "get_dataset_strong"]


def _loaders(cfg):
    # Seeded here because the script builds its models next: their initial weights then follow
    # from SEED, as in tools/train.py (which also seeds before the loaders).
    seed_everything(cfg.SEED)
    return build_loaders(cfg, input_views(cfg), with_index=needs_index(cfg), device=resolve_device(cfg.DEVICE))


@exits_on_user_error
def get_dataset(cfg):
    return _loaders(script_cfg(cfg))


@exits_on_user_error
def get_dataset_strong(cfg):
    run = script_cfg(cfg)
    if input_views(run) != 2:
        raise ConfigError(f"get_dataset_strong gives weak + strong views, but DISTILLER.TYPE {run.DISTILLER.TYPE} "
                          f"with SOLVER.TRAINER {cfg.SOLVER.TRAINER or 'unset'} trains on one view; set SOLVER.TRAINER "
                          "ours (or call get_dataset)")
    return _loaders(run)
