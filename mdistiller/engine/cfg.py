"""mdistiller's `mdistiller.engine.cfg`, for scripts written for mdistiller and its forks:

    from mdistiller.engine.cfg import CFG as cfg
    from mdistiller.engine.cfg import show_cfg
    cfg.merge_from_file(path); cfg.merge_from_list(opts); cfg.freeze(); show_cfg(cfg)

`CFG` is a plain yacs tree holding our defaults (config.py: every mdistiller key with the same
value type, plus the keys only this project has), so mdistiller's, MLKD's and the SLD authors'
YAML files merge into it with yacs' own type checks. It is a copy: merging into it leaves the
defaults that `config.load_cfg` (our validating loader, used by tools/train.py) starts from alone.
"""
from ..config import get_cfg_defaults

CFG = get_cfg_defaults()
CFG.SOLVER.TRAINER = "base"  # mdistiller's default, the key of its trainer_dict (load_cfg resolves "" instead)

LOG_COLOURS = {"INFO": 36, "TRAIN": 32, "EVAL": 31}  # ANSI colours of mdistiller's message kinds


def log_msg(msg, mode="INFO"):
    """`[MODE] msg` in mdistiller's terminal colour for the kind (INFO, TRAIN or EVAL)."""
    return f"\033[{LOG_COLOURS[mode]}m[{mode}] {msg}\033[0m"


def show_cfg(cfg):
    """Print the run's general sections and its distiller's own section, as mdistiller does."""
    shown = type(cfg)()
    for name in ("EXPERIMENT", "DATASET", "DISTILLER", "SOLVER", "LOG"):
        shown[name] = cfg[name]
    if cfg.DISTILLER.TYPE in cfg:
        shown[cfg.DISTILLER.TYPE] = cfg[cfg.DISTILLER.TYPE]
    print(log_msg(f"CONFIG:\n{shown.dump()}", "INFO"))
