"""The one training loop, for every distiller (one or two views, CRD indices).

The step itself, per batch, is ONE function for every caller, in engine/step.py (`train_step`):
    loader batch -> device -> teacher outputs (once) -> for each student: student forward and
    loss terms (`distill`) -> update (`run.update`: backward + optimizer step, or DOT's) ->
    device-side metrics.
With SOLVER.CUDA_GRAPH a run's forward, backward and optimizer step are one CUDA-graph replay
(engine/graph_step.py); the metrics stay outside the graph.
`StudentRun` is everything about ONE student (its distiller, optimizer, grad scaler, metrics,
best accuracy, output folder, checkpoints); `Trainer` is the loop (epochs, LR schedule, RNG,
progress, evaluation) that feeds the same batches to every run. `tools/train.py` hands it one
run; paired training (engine/paired.py) hands it several runs and a `step` that runs the
teacher once for all of them. Each run follows its own config's LR schedule.

Several runs: what happens to a run whose loss turns non-finite (`stop_diverged`) and to runs
ahead of the others at a resume are the rules of engine/run_group.py; a single run raises
NonFiniteLossError.

Resume semantics. Checkpoints are written at epoch ends. Besides mdistiller's fields
(`epoch`, `model`, `optimizer`, `best_acc`) `latest` holds the grad-scaler state and every
rank's RNG state (python, numpy, torch, CUDA, loader generators) captured after the epoch's
evaluation, i.e. the exact state the next epoch starts from. `--resume` continues after the
last completed epoch; an epoch interrupted midway is trained again from its start with the
same random numbers, so a killed-and-resumed run ends with the same weights as an
uninterrupted one (bit-for-bit on CPU with the same thread count and DATASET.NUM_WORKERS; on
GPU only with DETERMINISTIC, as kernels may be non-deterministic otherwise).
Before anything of an epoch is written, its evaluation (loss, top-1, top-5) and every parameter
and buffer must be finite (`check_finite`); otherwise the run stops, naming the last committed
epoch, so no checkpoint ever holds diverged weights.
Per epoch: the events are flushed, then the epoch's checkpoints and its worklog block are
committed together (engine/run_folder.py `commit`: staged whole, `latest` renamed in as the
commit point, the rest after it), so no file ever names an epoch that was not committed, after
a full disk, Ctrl-C, SIGTERM or kill -9 alike. At every start the worklog keeps only the blocks
of committed epochs (none for a fresh start). A `--resume` of a folder with nothing committed
(killed before its first commit) starts at epoch 1.
"""
import math
import numbers
import os
import time
from collections import OrderedDict

import torch

from ..config import dump_cfg
from ..errors import CheckpointError, NonFiniteLossError, OutputError, UserError
from ..runtime.safe_write import write_text_atomic, writing
from .checkpoint import extract_state_dict, load_checkpoint
from .device import compile_networks, grad_scaler, prepare_model, speed_settings, to_device
from .dot import dot_update
from .distributed import DistInfo, all_gather_object, barrier, broadcast_object, wrap_ddp
from .evaluation import evaluate
from .graph_step import GraphedStep, check_cuda_graph
from .metrics import RunningSums
from .objective import total_loss
from .optim import build_optimizer, lr_at, set_lr
from .progress import Bar, epoch_summary, say
from .run_folder import STOPPED_FILE, RunFiles, check_start, commit, make_ready
from .run_group import run_rules, stopped_reason
from .seeding import capture_rng_state, restore_rng_state, seed_everything
from .stat_sums import StatSums, collect_stats, scalar_stats, stat_sources, worst_entries_line
from .teacher_identity import record_teacher
from .events import EventLog
from .wandb_log import open_wandb
from .step import train_step
from .worklog import best_line, format_epoch_block, read_text, trim_worklog

RESUME_WAY_OUT = "resume from an intact copy (e.g. an epoch_N file copied over latest) or start over with --overwrite"
BAR_REFRESH_ITERS = 20  # iterations between progress-bar metric reads (each read is one device sync)
_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


class OutOfMemory(UserError):
    """The device ran out of memory; the message says which knobs lower the footprint."""


def backward_step(run, losses):
    """The standard update: one backward of the summed loss and one optimizer step (loss-scaled
    under fp16, plain otherwise). Returns the total loss."""
    loss = total_loss(losses)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return loss


# SOLVER.UPDATE name -> update(run, losses) -> total loss, for trainers whose update is not one
# backward + one step (DOT back-propagates its two losses separately). Default: backward_step.
TRAINER_UPDATES = {"dot": dot_update}


def as_batch_dict(batch):
    """Train batches are dicts (`image` or `image_weak`/`image_strong`, `target`, `index`, ...);
    mdistiller-style tuples `(image, target, index[, contrastive_index])` are accepted too."""
    if isinstance(batch, dict):
        return batch
    names = ("image", "target", "index", "contrastive_index")
    return dict(zip(names, batch))


def set_loader_epoch(loader, epoch):
    """Tell a distributed sampler (or a loader that shuffles by itself) which epoch starts, so
    that every epoch gets a new order that all ranks agree on."""
    for obj in (loader, getattr(loader, "sampler", None),
                getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if obj is not None and callable(getattr(obj, "set_epoch", None)):
            obj.set_epoch(epoch)
            return


class StudentRun:
    """Training state and outputs of one student (see the module docstring)."""

    def __init__(self, cfg, distiller, folder, device, info=DistInfo()):
        self.cfg = cfg
        self.device = device
        self.info = info
        self.amp = cfg.SOLVER.AMP
        speed = speed_settings(cfg, device)  # CHANNELS_LAST, TEACHER_CHUNK, TEACHER_COMPILE (auto: resolved)
        self.channels_last = speed["channels_last"]
        distiller.teacher_chunk = speed["teacher_chunk"]
        teacher = getattr(distiller, "teacher", None)
        if teacher is not None:
            teacher.requires_grad_(False)  # never trained; DDP then leaves it out of gradient sync
        self.distiller = prepare_model(distiller, device, self.channels_last)
        # A teacher that trains (mdistiller-faithful OFD) cannot have its weights frozen into a graph.
        freeze_teacher = speed["teacher_compile"] and not getattr(distiller, "teacher_trains", False)
        compile_networks(distiller, cfg.SOLVER.COMPILE, freeze_teacher)
        self.model = wrap_ddp(distiller, device, info)
        self.optimizer = build_optimizer(cfg, distiller.get_learnable_parameters())
        self.scaler = grad_scaler(device, self.amp)
        self.update = TRAINER_UPDATES.get(cfg.SOLVER.UPDATE, backward_step)
        self.files = RunFiles(folder)
        self.best_acc = -1.0  # mdistiller's start value
        self.events = None
        self.wandb = None  # LOG.WANDB: engine/wandb_log.py
        self.sums = None
        self.stat_sources = stat_sources(distiller)  # distillers' logged statistics (swap rates, ...)
        self.graphed = None  # SOLVER.CUDA_GRAPH: the step as a replayed CUDA graph (engine/graph_step.py)
        if cfg.SOLVER.CUDA_GRAPH:
            check_cuda_graph(cfg, device, info.world_size)
            self.graphed = GraphedStep(self.model, self.optimizer, device, self.amp, self.stat_sources)
        self.stat_sums = None
        self.last_stats = {}  # the last epoch's statistics, for the end-of-training summary
        self.lr = None  # the LR last set on this run's optimizer
        self.epoch_done = 0  # last completed epoch (set by a resume)
        self.epochs_begun = 0  # epochs this process has started (0 or 1: no update has happened yet)
        self.stopped = None  # why this run stopped early (see the module docstring), else None
        self._first_bad = self._bad_values = self._bad_names = None

    # ------------------------------------------------------------------ logs
    def open_logs(self):
        """Rank 0: the resolved config beside the outputs, the tensorboard writer, wandb (LOG.WANDB)."""
        if self.info.is_main:
            self.wandb = open_wandb(self.cfg, self.files.folder, resumed=self.epoch_done > 0)
            write_text_atomic(self.files.config, dump_cfg(self.cfg))
            record_teacher(self.files.folder, self.cfg, resumed=self.epoch_done > 0)
            with writing(self.files.events):
                self.events = EventLog(self.files.events)

    def close_logs(self):
        if self.events is not None:
            self.events.close()
            self.events = None
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None

    def stop(self, reason):
        """Leave the loop for good (a diverged student of a paired run); rank 0 records why."""
        self.stopped = reason
        if self.info.is_main:
            write_text_atomic(self.files.path(STOPPED_FILE), reason + "\n")

    # ------------------------------------------------------------------ one step
    def begin_epoch(self):
        self.epochs_begun += 1
        self.model.train()
        self.sums = RunningSums(self.device)
        self.stat_sums = StatSums()
        self._first_bad = torch.full((), -1, dtype=torch.long, device=self.device)

    def record(self, loss, losses, preds, target, iteration, stats=None):
        """Accumulate metrics on the device (no host sync). The loss terms of the first step
        whose loss is not finite are kept too, for the error message. `stats`: the step's
        distiller statistics when the step collected them itself (a graphed step), else they
        are collected here."""
        n = target.shape[0]
        names = ["loss"] + list(losses)
        values = torch.stack([loss.detach().float()] + [v.detach().float().mean() for v in losses.values()])
        for name, value in zip(names, values):
            self.sums.add(name if name == "loss" else "term/" + name, value, n)
        self.sums.add_sum("correct", (preds.detach().argmax(dim=1) == target).sum())
        self.sums.add_samples(n)
        self.stat_sums.add(collect_stats(self.stat_sources) if stats is None else stats)
        first_now = ~torch.isfinite(values[0]) & (self._first_bad < 0)
        self._first_bad = torch.where(first_now, iteration, self._first_bad)
        if self._bad_values is None or self._bad_values.shape != values.shape:
            self._bad_values, self._bad_names = torch.zeros_like(values), names
        self._bad_values = torch.where(first_now, values, self._bad_values)

    def train_stats(self, epoch, iters, info=None):
        """Epoch-so-far training metrics; `info` None reads this rank only (no collective).
        Raises NonFiniteLossError when the loss went NaN/inf."""
        means, count = self.sums.read(info or DistInfo())
        stats = {"loss": means.get("loss", float("nan")), "acc": 100.0 * means.get("correct", 0.0),
                 "terms": {k[len("term/"):]: v for k, v in means.items() if k.startswith("term/")},
                 "count": count}
        if info is not None:  # epoch end only: the statistics are not needed for progress bars
            stats["stats"] = self.stat_sums.read(info)
        if not math.isfinite(stats["loss"]):
            self._raise_non_finite(epoch, iters)
        return stats

    def _raise_non_finite(self, epoch, iters):
        first = int(self._first_bad.item())
        if first >= 0:
            terms = dict(zip(self._bad_names[1:], self._bad_values.tolist()[1:]))
            broken = [k for k, v in terms.items() if not math.isfinite(v)] or ["the sum of the terms"]
            shown = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
            where = f"iteration {first + 1}/{iters}: {', '.join(broken)} ({shown})"
            every = len(broken) == len(terms) > 1
        else:
            where, every = "an iteration on another rank", False
        raise NonFiniteLossError(f"non-finite loss at epoch {epoch}, {where}; {self._kept()}; "
                                 f"{self._divergence_advice(first, every)}")

    def _divergence_advice(self, first, every=False):
        """The way out that fits the cause (messages must be true): broken teacher weights, a
        loss that is non-finite before any update (no LR can help), or a step that was too large."""
        teacher = getattr(self.distiller, "teacher", None)
        if teacher is not None and not all(torch.isfinite(t).all() for t in teacher.state_dict().values()
                                           if t.is_floating_point()):
            return ("the teacher's weights hold NaN/inf: point DISTILLER.TEACHER_WEIGHTS to intact weights "
                    "(check them with tools/eval.py)")
        if first == 0 and self.epochs_begun == 1:
            return ("it was the first step, before any update, so the teacher's outputs or a loss term are "
                    "non-finite on this data: check the teacher with tools/eval.py and the named term's settings")
        if every:
            return ("every term is non-finite, so an earlier update left non-finite weights (a NaN gradient, "
                    "such as KDSVD's on a degenerate map, or too large a step): lower SOLVER.LR or use SOLVER.AMP "
                    "bf16/none")
        return "lower SOLVER.LR or use SOLVER.AMP bf16/none"

    def _kept(self):
        """What a stop for divergence leaves: the last committed epoch, whose weights are finite."""
        if self.epoch_done:
            return f"training stopped; the last committed epoch {self.epoch_done} ({self.files.latest}) is kept"
        return "training stopped; no epoch had been committed"

    def check_finite(self, epoch, test):
        """Before an epoch is committed: its evaluation and every parameter and buffer must be
        finite (weights can blow up while the epoch's training loss, taken before each update,
        still looks fine); NonFiniteLossError otherwise, naming the last committed epoch."""
        bad = [f"test {k} {test[k]}" for k in ("loss", "top1", "top5") if not math.isfinite(test[k])]
        tensors = [(n, t) for n, t in [*self.distiller.named_parameters(), *self.distiller.named_buffers()]
                   if t.is_floating_point()]
        if tensors:
            finite = torch.stack([torch.isfinite(t).all() for _, t in tensors]).tolist()  # one device sync
            broken = [n for (n, _), ok in zip(tensors, finite) if not ok]
            if broken:
                bad.append(f"{len(broken)} weight tensor(s) such as {broken[0]}")
        if bad:
            raise NonFiniteLossError(f"non-finite values after epoch {epoch} ({', '.join(bad)}); nothing of epoch "
                                     f"{epoch} was written and {self._kept()}; lower SOLVER.LR or use SOLVER.AMP "
                                     "bf16/none")

    # ------------------------------------------------------------------ epoch end
    def evaluate(self, loader, progress=False):
        self.model.eval()
        return evaluate(lambda image: self.distiller(image=image), loader, self.device, self.amp,
                        self.channels_last, self.info, progress)

    def log_iteration(self, stats, lr, images_per_s, step):
        if self.events is not None:
            values = {"iter/loss": stats["loss"], "iter/train_acc": stats["acc"], "iter/lr": lr,
                      "iter/throughput": images_per_s}
            values.update({f"iter/{k}": v for k, v in stats["terms"].items()})
            self.events.scalars(values, step)

    def finish_epoch(self, epoch, lr, train, test, rng, images_per_s):
        """Best-accuracy bookkeeping (every rank), logs and checkpoints (rank 0)."""
        improved = test["top1"] >= self.best_acc  # mdistiller: ties also refresh `best`
        self.best_acc = max(self.best_acc, test["top1"])
        if not self.info.is_main:
            return
        values = OrderedDict([("train_acc", train["acc"]), ("train_loss", train["loss"]),
                              ("test_acc", test["top1"]), ("test_acc_top5", test["top5"]),
                              ("test_loss", test["loss"])])
        self.last_stats = train.get("stats", {})
        extra = scalar_stats(self.last_stats)
        scalars = dict(values, lr=lr, throughput=images_per_s)
        scalars.update({k.replace(".", "/"): v for k, v in extra.items()})
        scalars.update({f"loss_terms/{k}": v for k, v in train["terms"].items()})
        self.events.scalars(scalars, epoch)
        self.events.flush()
        block = format_epoch_block(epoch, lr, OrderedDict([*values.items(), *extra.items()]))
        self.save(epoch, rng, improved, block)
        if self.wandb is not None:  # after the commit: wandb never shows an epoch the run folder lacks
            self.wandb.log_epoch(epoch, lr, {k: v for k, v in scalars.items() if k != "lr"}, self.best_acc)

    def checkpoint(self, epoch, rng):
        return {"epoch": epoch, "model": self.distiller.state_dict(), "optimizer": self.optimizer.state_dict(),
                "best_acc": float(self.best_acc), "scaler": self.scaler.state_dict(), "rng": rng,
                "world_size": self.info.world_size, "config": dump_cfg(self.cfg)}

    def save(self, epoch, rng, improved, worklog_block):
        """Commit the epoch: its checkpoints and its worklog block, all or nothing (run_folder.commit)."""
        state = self.checkpoint(epoch, rng)
        student = {"model": self.distiller.student.state_dict()}
        files = {"latest": state, "student_latest": student}
        if epoch % self.cfg.LOG.SAVE_CHECKPOINT_FREQ == 0:
            files.update({f"epoch_{epoch}": state, f"student_{epoch}": student})
        if improved:
            files.update({"best": state, "student_best": student})
        writers = {name: (lambda f, obj=obj: torch.save(obj, f)) for name, obj in files.items()}
        with writing(self.files.worklog):
            log = read_text(self.files.worklog) + worklog_block
        writers["worklog.txt"] = lambda f: f.write(log.encode())
        try:
            commit(self.files, writers)
        except OutputError as err:
            raise OutputError(f"{err}; nothing of epoch {epoch} was kept and {self._kept()}") from None

    def load_resume(self, ckpt):
        """Restore from a loaded `latest`; returns its epoch. Accepts mdistiller's own files
        (DataParallel `module.` keys, no scaler/RNG state)."""
        path = self.files.latest
        epoch, best_acc = resume_fields(ckpt, path)
        try:
            self.distiller.load_state_dict(extract_state_dict(ckpt, path))
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if ckpt.get("scaler") and self.scaler.is_enabled():
                self.scaler.load_state_dict(ckpt["scaler"])
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as err:
            first = f"no {err.args[0]!r} entry" if isinstance(err, KeyError) else \
                (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise CheckpointError(f"checkpoint {path} does not fit this run ({first}); resume with the "
                                  "config the run was started with, or start over with --overwrite") from None
        self.best_acc = best_acc
        return epoch


def _is_number(value, kind):
    return isinstance(value, kind) and not isinstance(value, bool)


def resume_fields(ckpt, path):
    """(epoch, best_acc) of a loaded resume checkpoint, checked: one-line CheckpointError for a
    file that is not a run checkpoint or holds a broken field."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path} is not a run checkpoint (it holds a {type(ckpt).__name__}); "
                              f"{RESUME_WAY_OUT}")
    epoch, best_acc = ckpt.get("epoch"), ckpt.get("best_acc")
    for name, value, ok in (("epoch", epoch, _is_number(epoch, numbers.Integral) and epoch >= 1),
                            ("best_acc", best_acc, _is_number(best_acc, numbers.Real) and math.isfinite(best_acc))):
        if not ok:
            found = "it is missing" if value is None else f"found {type(value).__name__} {value!r:.40}"
            raise CheckpointError(f"checkpoint {path} has no valid {name!r} ({found}); {RESUME_WAY_OUT}")
    return int(epoch), float(best_acc)


class Trainer:
    """Feeds the same batches to one or more StudentRuns, epoch after epoch.

    `step(runs, batch, epoch, iteration)` trains the given runs on one batch (default:
    engine/step.py's `train_step`); `stop_diverged` stops a diverged run of several instead of
    raising (engine/run_group.py)."""

    def __init__(self, cfg, runs, train_loader, test_loader, device, info=DistInfo(), step_hooks=(),
                 step=train_step, stop_diverged=False):
        self.cfg = cfg
        self.runs = [runs] if isinstance(runs, StudentRun) else list(runs)
        self.rules = run_rules(self.runs, info, stop_diverged)  # one run, or a group's rules
        self.step = step
        self.train_loader = train_loader
        self.test_loader = test_loader
        self.device = device
        self.info = info
        self.step_hooks = list(step_hooks)  # fn(epoch, iteration) after every step (tests, profiling)
        self.show_bars = info.is_main and not cfg.LOG.QUIET
        self._where = "start-up"

    def fit(self, resume=False, overwrite=False):
        """Train to SOLVER.EPOCHS; returns the best test top-1 of every run (None: stopped)."""
        try:
            first = self._start(resume, overwrite)
            for epoch in range(first, self.cfg.SOLVER.EPOCHS + 1):
                self._epoch(epoch)
            self._finish()
        except _OOM:
            raise self._out_of_memory() from None
        except RuntimeError as err:
            if "out of memory" in str(err) or "not enough memory" in str(err):
                raise self._out_of_memory() from None
            raise
        finally:
            for run in self.runs:
                run.close_logs()
        return [None if run.stopped else run.best_acc for run in self.runs]

    def _out_of_memory(self):
        s = self.cfg.SOLVER
        return OutOfMemory(f"out of memory on {self.device} at {self._where} (SOLVER.BATCH_SIZE {s.BATCH_SIZE}, "
                           f"SOLVER.AMP {s.AMP}): lower SOLVER.BATCH_SIZE (and SOLVER.LR with it) or set "
                           "SOLVER.AMP bf16; the last good checkpoint is kept")

    # ------------------------------------------------------------------ start / resume
    def _start(self, resume, overwrite):
        problem = None
        if self.info.is_main:
            checked = [r for r in self.runs if not (resume and stopped_reason(r.files.folder))]
            problem = next(filter(None, (check_start(r.files, resume, overwrite, r.cfg) for r in checked)), None)
        problem = broadcast_object(problem, self.info)  # every rank stops, not only rank 0
        if problem:
            raise CheckpointError(problem)
        if self.info.is_main:
            for run in self.runs:
                moved = make_ready(run.files, overwrite)
                if moved:
                    say(f"moved the old outputs of {run.files.folder} to {moved}")
                if not resume and stopped_reason(run.files.folder):
                    os.remove(run.files.path(STOPPED_FILE))  # a fresh start forgets an old divergence
        barrier(self.info)
        first = self._resume() if resume else 1
        if first == 1:
            # Training randomness starts from SEED however much model building consumed;
            # ranks differ so that their augmentations differ.
            seed_everything(self.cfg.SEED + self.info.rank)
        if self.info.is_main:
            for run in self.runs:  # blocks of epochs never committed go: the worklog is that of the checkpoints
                if run.stopped is None:
                    with writing(run.files.worklog):
                        trim_worklog(run.files.worklog, run.epoch_done)
        for run in self.runs:
            run.open_logs()
        return first

    def _resume(self):
        """Load every live run's `latest` (a run with nothing committed starts at epoch 1);
        returns the first epoch to train."""
        live = self.rules.live()
        ckpts = {}
        for run in live:
            if os.path.isfile(run.files.latest):
                try:
                    ckpts[run] = load_checkpoint(run.files.latest)
                except CheckpointError as err:
                    raise CheckpointError(f"{err}; {RESUME_WAY_OUT}") from None
                run.epoch_done = run.load_resume(ckpts[run])
        behind = self.rules.resume_from(live)
        for run in self.runs:
            where = (f"stopped earlier: {run.stopped}" if run.stopped else
                     f"after epoch {run.epoch_done} (best top-1 {run.best_acc:.2f})" if run.epoch_done else
                     "from epoch 1: no epoch had been committed")
            say(f"resuming {run.files.folder} {where}", self.info.is_main)
        if behind.epoch_done:
            self._restore_rng(ckpts[behind], behind.files.latest, behind.epoch_done)
        return behind.epoch_done + 1

    def _restore_rng(self, ckpt, path, epoch):
        rng = ckpt.get("rng")
        if not rng or len(rng) != self.info.world_size:
            say(f"warning: {path} has no RNG state for {self.info.world_size} process(es); "
                "the resumed run is not bit-identical to an uninterrupted one", self.info.is_main)
            seed_everything(self.cfg.SEED + self.info.rank + 1000 * epoch)
            return
        try:
            restore_rng_state(rng[self.info.rank], self.train_loader, self.test_loader)
        except (TypeError, ValueError, KeyError, IndexError, RuntimeError, AttributeError) as err:
            first = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"checkpoint {path} holds a malformed RNG state ({first}); {RESUME_WAY_OUT}") from None

    # ------------------------------------------------------------------ one epoch
    def _read_stats(self, runs, epoch, iters, info=None):
        """[(run, train_stats)]; a diverged run raises, or is dropped from `runs` (in place) by
        the group's rules (`drop_diverged`)."""
        return self.rules.drop_diverged(runs, lambda run: (run, run.train_stats(epoch, iters, info)))

    def _epoch(self, epoch):
        cfg, info, loader = self.cfg, self.info, self.train_loader
        set_loader_epoch(loader, epoch)
        iters = len(loader)
        runs = self.rules.due(epoch)
        for run in runs:
            run.begin_epoch()
        bar = Bar(iters, f"epoch {epoch}/{cfg.SOLVER.EPOCHS}", self.show_bars)
        start = mark = time.perf_counter()
        seen = mark_seen = 0
        for it, batch in enumerate(loader):
            self._where = f"epoch {epoch}, iteration {it + 1}/{iters}"
            for run in runs:
                step_lr = lr_at(run.cfg, epoch, it, iters)
                if step_lr != run.lr:
                    set_lr(run.optimizer, step_lr)
                    run.lr = step_lr
            batch = to_device(as_batch_dict(batch), self.device, self.runs[0].channels_last)
            try:
                self.step(runs, batch, epoch, it)
            except torch.linalg.LinAlgError as err:  # e.g. an SVD of NaN features: one line, not a traceback
                raise self._linalg_failure(err, runs, epoch, it, iters) from None
            seen += batch["target"].shape[0]
            bar.advance()
            for hook in self.step_hooks:
                hook(epoch, it)
            done = it + 1
            log_now = info.is_main and done % cfg.LOG.TENSORBOARD_FREQ == 0
            if log_now or (self.show_bars and done % BAR_REFRESH_ITERS == 0):
                now = time.perf_counter()
                stats = self._read_stats(runs, epoch, iters)  # local read: one sync
                images_per_s = (seen - mark_seen) * info.world_size / max(now - mark, 1e-9)
                mark, mark_seen = now, seen
                s = stats[0][1]
                bar.show(f"loss {s['loss']:.4f} top1 {s['acc']:.2f} {images_per_s:.0f} img/s")
                if log_now:
                    for run, st in stats:
                        run.log_iteration(st, run.lr, images_per_s, (epoch - 1) * iters + done)
        bar.close()
        seconds = time.perf_counter() - start
        images_per_s = seen * info.world_size / max(seconds, 1e-9)
        trains = self._read_stats(runs, epoch, iters, info)
        self._where = f"evaluation after epoch {epoch}"
        tests = self._evaluate([run for run, _ in trains])
        rng = all_gather_object(capture_rng_state(loader, self.test_loader), info)
        tested = [run for run, _ in trains]
        finite = self.rules.drop_diverged(list(tested), lambda run: run.check_finite(epoch, tests[tested.index(run)]) or run)
        for (run, train), test in zip(trains, tests):
            if run not in finite:
                continue  # stopped (paired runs): nothing of this epoch is written
            epoch_lr = lr_at(run.cfg, epoch, 0, max(iters, 1))
            run.finish_epoch(epoch, epoch_lr, train, test, rng, images_per_s)
            run.epoch_done = epoch
            label = f"{os.path.basename(run.files.folder)}: " if len(self.runs) > 1 else ""
            say(label + epoch_summary(epoch, cfg.SOLVER.EPOCHS, epoch_lr, train, test, run.best_acc, images_per_s,
                                      seconds), info.is_main)

    def _linalg_failure(self, err, runs, epoch, it, iters):
        """A loss term's linear algebra failed on this batch (torch raises on non-finite input)."""
        names = ", ".join(dict.fromkeys("+".join([r.cfg.DISTILLER.TYPE, *r.cfg.DISTILLER.STACK]) for r in runs))
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        return NonFiniteLossError(f"non-finite values at epoch {epoch}, iteration {it + 1}/{iters}: a loss term of "
                                  f"{names} failed ({first}); {runs[0]._kept()}; {runs[0]._divergence_advice(it)}")

    def _evaluate(self, runs):
        """Test metrics of each run. Every evaluation starts from the same random state (a test
        loader may draw from it), so the state after several equals that after one: the next
        epoch's data stream does not depend on how many runs share the loop."""
        before = capture_rng_state(None, self.test_loader) if len(runs) > 1 else None
        tests = []
        for i, run in enumerate(runs):
            if i:
                restore_rng_state(before, None, self.test_loader)
            tests.append(run.evaluate(self.test_loader, self.show_bars))
        return tests

    def _finish(self):
        for run in self.runs:
            if run.stopped:
                say(f"stopped early: {run.files.folder}: {run.stopped}", self.info.is_main)
                continue
            if self.info.is_main:
                with writing(run.files.worklog):
                    text = read_text(run.files.worklog)
                write_text_atomic(run.files.worklog, text + best_line(run.best_acc))
            say(f"best top-1 {run.best_acc:.2f} ({run.files.folder})", self.info.is_main)
            for name, values in run.last_stats.items():
                if isinstance(values, list):  # per-class statistics, e.g. the teacher's error
                    say(worst_entries_line(name, values), self.info.is_main)
