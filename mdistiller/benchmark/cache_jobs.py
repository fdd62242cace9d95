"""Teacher-cache jobs of a benchmark: one per (teacher, seed, stream) whose logit students
replay it (DISTILLER.TEACHER_CACHE set in their configs; engine/teacher_cache.py).

`plan_cache_units` looks at the student units (launch.py) and gives each distinct stream one
`CacheUnit`, which the launchers run like any unit: in the students' stage, ahead of them (the
students may start while the cache is written: each reads an epoch's file once it is complete),
after the teachers the cache is computed from (on Slurm: `afterok`, as the students).

A cache unit's anchor (`<project>/teacher_cache/<unit name>/`) is its "run folder" for the
launchers: its lock (engine/run_lock.py) says a job works on it, and `claim.json` there names
the cache folder once the job holds the cache (`wait_for_claim`: a student waits for it, so it
does not look for the cache before the job has created it) and how many epochs it must hold.
"""
import json
import os
import time
from dataclasses import dataclass, field

from ..engine.run_lock import describe, holder_alive, read_lock, release, try_claim
from ..runtime.safe_write import read_json_object, write_text_atomic

CACHE_ROLE = "teacher cache"
CLAIM_FILE = "claim.json"
CLAIM_WAIT_S = 900  # how long a student waits for its cache job to start before it runs its teacher
CLAIM_POLL_S = 1.0


def stream_signature(cfgs, views):
    """What decides a stream, from configs alone (the teacher's weights are read by the job)."""
    from ..distillers.inputs import needs_index

    cfg = cfgs[0]
    keys = (cfg.DISTILLER.TEACHER_CACHE, cfg.DISTILLER.TEACHER, cfg.DISTILLER.TEACHER_WEIGHTS, cfg.SEED,
            cfg.SOLVER.BATCH_SIZE, cfg.SOLVER.AMP, str(cfg.SOLVER.CHANNELS_LAST), str(cfg.DISTILLER.TEACHER_CHUNK),
            str(cfg.DISTILLER.TEACHER_COMPILE), cfg.DISTILLER.TEACHER_CACHE_FP16, cfg.DEVICE,
            json.dumps(cfg.DATASET, sort_keys=True, default=str), views, any(needs_index(c) for c in cfgs))
    return json.dumps(keys, default=str)


def replayable(cfg):
    """Whether a config's run can replay teacher logits: cache on, a teacher, logit terms only."""
    from ..distillers import teacher_required
    from ..distillers.registry import get_distiller_class

    names = [cfg.DISTILLER.TYPE] + list(cfg.DISTILLER.STACK)
    return (cfg.DISTILLER.TEACHER_CACHE != "off" and teacher_required(cfg)
            and all(getattr(get_distiller_class(n), "teacher_logits_only", False) for n in names))


@dataclass
class CacheUnit:
    """The job writing one stream's teacher cache; `runs` holds its anchor (module docstring)."""

    runs: list
    views: int
    epochs: int
    students: list = field(default_factory=list)  # the units that replay it
    paired: bool = False

    @property
    def anchor(self):
        return self.runs[0].folder

    @property
    def name(self):
        return os.path.basename(os.path.normpath(self.anchor))

    @property
    def project_dir(self):
        return os.path.dirname(os.path.dirname(os.path.normpath(self.anchor)))

    def label(self):
        r = self.runs[0]
        return f"teacher cache | {r.pair} | seed {r.seed} | {self.views} view(s)"


def plan_cache_units(student_units):
    """[CacheUnit] for the student units that replay (each unit's `cache` is set to its own)."""
    from ..distillers import teacher_required
    from ..distillers.inputs import input_views
    from .spec import Run, slug

    units = {}
    for unit in student_units:
        cfgs = [run.cfg() for run in unit.runs]
        if all(c.DISTILLER.TEACHER_CACHE == "off" for c in cfgs):
            continue  # the default: nothing to plan, nothing more to read
        distils = [(run, c) for run, c in zip(unit.runs, cfgs) if teacher_required(c)]
        if not distils or not all(replayable(c) for _, c in distils):
            continue
        first, cfg = distils[0]
        views = max(input_views(c) for c in cfgs) if unit.paired else input_views(cfg)
        # The fast loader's one-view stream is its two-view stream's weak view: one cache serves both.
        key = stream_signature([c for _, c in distils], "any" if cfg.DATASET.LOADER == "fast" else views)
        if key in units:
            units[key].views = max(units[key].views, views)
        else:
            name = f"{slug(first.pair)},seed{first.seed}," + ("fast" if cfg.DATASET.LOADER == "fast" else f"{views}views")
            folder = os.path.join(cfg.LOG.PREFIX, cfg.EXPERIMENT.PROJECT, "teacher_cache", name)
            anchor = Run(CACHE_ROLE, first.pair, first.seed, CACHE_ROLE, first.config, list(first.opts), folder)
            units[key] = CacheUnit([anchor], views, cfg.SOLVER.EPOCHS)
        units[key].students.append(unit)
        unit.cache = units[key]
    return list(units.values())


def read_claim(unit):
    return read_json_object(os.path.join(unit.anchor, CLAIM_FILE)) or {}


def cache_complete(unit):
    """Whether the cache holds every epoch its students train."""
    from ..engine.teacher_cache import epochs_done

    folder = read_claim(unit).get("folder")
    return bool(folder) and set(range(1, unit.epochs + 1)) <= set(epochs_done(folder))


def run_cache_unit(unit, say=print):
    """The job: claim the anchor, write (or complete) the cache. Returns launch.run_unit's
    (counts, failures), counting caches apart from runs; a failure names the anchor folder."""
    from ..engine.teacher_cache_job import write_teacher_cache
    from ..errors import UserError

    ok, holder = try_claim(unit.anchor)
    if not ok:
        say(f"{unit.label()}: held by {describe(holder)}")
        return {"cache busy": 1}, []
    try:
        def announce(folder):
            write_text_atomic(os.path.join(unit.anchor, CLAIM_FILE),
                              json.dumps({"folder": folder, "epochs": unit.epochs}) + "\n")

        os.makedirs(unit.anchor, exist_ok=True)
        say(f"{unit.label()}: writing ({unit.anchor})")
        write_teacher_cache(unit.runs[0].cfg(), unit.views, announce)
        return {"caches": 1}, []
    except UserError as err:
        write_text_atomic(os.path.join(unit.anchor, CLAIM_FILE), json.dumps({"failed": str(err)}) + "\n")
        return {"caches": 1}, [(unit.anchor, str(err))]
    finally:
        release(unit.anchor)


def wait_for_claim(unit, say=print, wait_s=CLAIM_WAIT_S):
    """Before a student of `unit` trains: wait until its cache job holds the cache (or failed,
    or never started within `wait_s`); the student then replays what the cache has."""
    deadline, told = time.time() + wait_s, False
    while not read_claim(unit) and time.time() < deadline:
        if not told:
            say(f"waiting for the job of {unit.label()} to start")
            told = True
        time.sleep(CLAIM_POLL_S)


def cache_units_of(stages):
    return [unit for stage in stages for unit in stage if isinstance(unit, CacheUnit)]


def cache_state_line(unit):
    """`--status`: where a cache job stands and what the cache holds."""
    from ..engine.teacher_cache import epochs_done

    claim, holder = read_claim(unit), read_lock(unit.anchor)
    folder = claim.get("folder")
    done = epochs_done(folder) if folder else []
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)) if folder and \
        os.path.isdir(folder) else 0
    if claim.get("failed"):
        state = "failed"
    elif holder and holder_alive(holder):
        state = "running"
    else:
        state = "done" if cache_complete(unit) else "not started" if not done else "unfinished"
    where = f" {folder}, {len(done)}/{unit.epochs} epochs, {size / 1e6:.1f} MB" if folder else ""
    who = f" ({describe(holder)})" if state == "running" else f" ({claim['failed']})" if state == "failed" else ""
    return f"{state:<11} {unit.label()}{where}{who}"
