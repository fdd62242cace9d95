"""Weights & Biases logging (`LOG.WANDB True`), as mdistiller did it, on rank 0 only.

mdistiller's wandb run: project EXPERIMENT.PROJECT; tags EXPERIMENT.TAG split at commas plus one
"KEY:VALUE" per command-line override of tools/train.py (`command_line`); name
"<PROJECT>/<NAME or TAG>" with those override tags glued on, joined by commas, right after it
(mdistiller's quirk: no comma before the first); one `current lr` and the epoch's metrics per
epoch; `best_acc` in the run summary. Added here: the epoch is the wandb step; the distillers'
statistics (swap rates, ...) and per-term losses are logged beside the metrics; the resolved
config is the run's config; a benchmark run's table cell (method, pair, seed; set by the
benchmark runner with `table_cells`) is in its config and its group is "<pair> | <method>".

A resumed training continues the same wandb run: the run's id is kept in `<run folder>/wandb_id.txt`
and passed back to wandb with resume="allow". A fresh start (epoch 1) gets a new id.
wandb is an optional dependency (pip install -e ".[wandb]"); its offline mode
(WANDB_MODE=offline) needs no account or network.
"""
import contextlib
import contextvars
import os
import secrets
import string

import yaml

from ..config import dump_cfg, run_name
from ..errors import ConfigError
from ..runtime.safe_write import writing

ID_FILE = "wandb_id.txt"
MAX_TAG = 64
_CELLS = contextvars.ContextVar("mdistiller_wandb_cells", default={})
_OVERRIDES = contextvars.ContextVar("mdistiller_wandb_overrides", default=())


@contextlib.contextmanager
def command_line(opts):
    """While training: tools/train.py's KEY VALUE overrides, which mdistiller put in the run's
    wandb name and tags."""
    token = _OVERRIDES.set(tuple(opts))
    try:
        yield
    finally:
        _OVERRIDES.reset(token)


def name_and_tags(cfg):
    """mdistiller's wandb run name and tags (module docstring)."""
    opts = _OVERRIDES.get()
    extra = [f"{key}:{value}" for key, value in zip(opts[::2], opts[1::2])]
    # wandb refuses empty tags and tags over 64 characters (a long path in an override)
    tags = [tag[:MAX_TAG] for tag in cfg.EXPERIMENT.TAG.split(",") + extra if tag]
    return f"{cfg.EXPERIMENT.PROJECT}/{run_name(cfg)}{','.join(extra)}", tags


@contextlib.contextmanager
def table_cells(cells):
    """While training: {run folder: {"method", "pair", "seed"}} of benchmark runs, for their wandb config."""
    token = _CELLS.set({os.path.abspath(folder): cell for folder, cell in cells.items()})
    try:
        yield
    finally:
        _CELLS.reset(token)


def import_wandb():
    try:
        import wandb
    except ImportError:
        raise ConfigError("config key LOG.WANDB is True but the wandb package is not installed; install the extra "
                          "with pip install -e \".[wandb]\" (or pip install wandb), or set LOG.WANDB False") from None
    return wandb


def _new_id():
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))  # wandb's alphabet


def _run_id(folder, resumed):
    """The id kept in the run folder when resuming, else a new one (written there)."""
    path = os.path.join(folder, ID_FILE)
    if resumed and os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            kept = f.read().strip()
        if kept:
            return kept
    run_id = _new_id()
    with writing(path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(run_id + "\n")
    return run_id


class WandbRun:
    """One training's wandb run: `log_epoch` after every epoch, `finish` at the end."""

    def __init__(self, cfg, folder, resumed):
        wandb = import_wandb()
        config = yaml.safe_load(dump_cfg(cfg))
        cell = _CELLS.get().get(os.path.abspath(folder))
        group = None
        if cell:
            config.update(cell)
            group = f"{cell['pair']} | {cell['method']}"
        name, tags = name_and_tags(cfg)
        try:
            self.run = wandb.init(project=cfg.EXPERIMENT.PROJECT, name=name, tags=tags, config=config, group=group,
                                  id=_run_id(folder, resumed), resume="allow", reinit="create_new")
        except Exception as err:  # noqa: BLE001 - wandb raises its own error types (no login, bad settings)
            # mdistiller printed "Failed to use WANDB" and trained on without it; we stop before the
            # first epoch instead, so that a run meant to be logged is not silently left out.
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise ConfigError(f"config key LOG.WANDB is True but wandb could not start ({reason}); run `wandb login`, "
                              "or set WANDB_MODE=offline (upload later with wandb sync), or LOG.WANDB False") from None

    def log_epoch(self, epoch, lr, metrics, best_acc):
        """`metrics`: the epoch's numbers by name (test_acc, train_loss, ..., swap statistics)."""
        self.run.log({"current lr": lr, **metrics}, step=epoch)
        self.run.summary["best_acc"] = best_acc

    def finish(self):
        self.run.finish()


def open_wandb(cfg, folder, resumed):
    """A WandbRun when LOG.WANDB is True, else None."""
    return WandbRun(cfg, folder, resumed) if cfg.LOG.WANDB else None
