"""Paired benchmarks: the students of one (teacher/student pair, seed) train together on one
data stream with one teacher pass per batch (`engine.build.train_paired`), and the table that
design makes tight: each method's best top-1 MINUS the baseline's on the same seed.

Running (`run_paired_matrix`, what `tools/benchmark.py --paired` calls): teacher-role runs
train first, alone, as in `runner.run_matrix`; then every (pair, seed) group. A group is
  skip     when each member is complete (or was stopped earlier because its loss diverged),
  resume   when each member is complete, stopped or resumable (runs ahead wait for the others),
  start    otherwise: all members start over, so that they share one stream again.
The members' folders are exactly a solo run's; run.json additionally names the group
(`paired_with`), and its `wall_time_s` is the GROUP's training time (the members trained
together; the group's sum is what a solo benchmark's per-run times add up to). A member
stopped for a non-finite loss is recorded as failed with the reason; the others complete.

Speed (`time_paired_vs_solo`, tools/bench_paired.py): the same configs trained one after
another and then as one paired group, timed in one process, with each student's final
weights compared between the two modes. A `TeacherClock` also times every teacher forward in
both modes, which gives the ratio the group would reach if sharing the teacher pass were all
it saved: solo total / (solo total - (solo teacher time - paired teacher time)). The measured
ratio sits near it when the paired step adds no overhead of its own; it can exceed it by the
data loading the group also shares.

The table (`paired_differences`, `write_paired_report` -> paired.md, paired.json): for each
method and pair, d_s = best_top1(method, seed s) - best_top1(baseline, seed s) over the seeds
where both are complete; reported as mean ± sample std of d_s (n seeds). Because both runs of
a seed saw the same batches and the same teacher outputs, the seed noise they share cancels
in d_s; "unpaired ±" shows sqrt(s_method² + s_baseline²), the spread the same difference
would have if the runs were independent. Baseline: the vanilla student when present, else
the first method (or the one named).
"""
import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import List, Optional

from ..engine.run_folder import RunFiles, check_start, config_changes, read_config
from ..engine.wandb_log import table_cells
from ..errors import ConfigError, UserError
from ..runtime.safe_write import writing_into
from .collect import read_run_json, write_run_json
from .report_checks import guard_replace, shown_cells
from .runner import attempt, decide, earlier_wall_time, run_claimed, run_meta, run_one, wandb_cells
from .spec import TEACHER_ROLE, VANILLA_NAMES, find_method, plan_runs
from .summary import mean_std

# ---------------------------------------------------------------- running
def paired_groups(runs):
    """Planned runs -> (teacher-role runs, [student runs of one (pair, seed)] in plan order)."""
    teachers = [r for r in runs if r.role == TEACHER_ROLE]
    groups = {}
    for run in runs:
        if run.role != TEACHER_ROLE:
            groups.setdefault((run.pair, run.seed), []).append(run)
    return teachers, list(groups.values())


def member_action(run, cfg, overwrite=False):
    """(action, reason) of one member: decide()'s, or "stopped" for a member whose loss
    diverged in an earlier attempt with this same config."""
    from ..engine.trainer import stopped_reason

    reason = stopped_reason(run.folder)
    saved = read_config(run.folder)
    if reason and saved and not config_changes(saved, cfg):
        return "stopped", f"stopped earlier ({reason})"
    return decide(run, cfg, overwrite)


def group_action(actions):
    """The group's action from its members' (module docstring)."""
    live = [a for a in actions if a != "stopped"]
    if all(a == "skip" for a in live):
        return "skip"
    if all(a in ("skip", "resume") for a in live):
        return "resume"
    return "start"


def execute_group(members, cfgs, action, train_group=None):
    """Train one group (resume or start over) and write each member's run.json."""
    from ..engine.trainer import stopped_reason

    if train_group is None:
        from ..engine.build import train_paired as train_group
    metas = [(run, earlier_wall_time(run, action),
              run_meta(run, paired_with=[m.folder for m in members if m is not run])) for run in members]
    start = time.perf_counter()
    try:
        with table_cells(wandb_cells(members)):
            best = train_group(cfgs, resume=action == "resume", overwrite=action == "start" and holds_results(members))
        for (run, _, meta), acc in zip(metas, best):
            if acc is None:
                meta["error"] = stopped_reason(run.folder) or "stopped"
            else:
                meta["status"] = "complete"
    except KeyboardInterrupt:
        for _, _, meta in metas:
            meta["status"] = "interrupted"
        raise
    except UserError as err:
        for _, _, meta in metas:
            meta["error"] = str(err)
        raise
    finally:
        seconds = time.perf_counter() - start
        for run, earlier, meta in metas:
            meta["wall_time_s"] = earlier + seconds
            write_run_json(run.folder, meta)


def holds_results(members):
    """Whether starting the group over must move results aside: a member's folder holds what a
    plain start refuses to overwrite (run_folder.check_start). Members that never committed an
    epoch simply start again, with nothing moved."""
    return any(check_start(RunFiles(run.folder), resume=False, overwrite=False) for run in members)


def run_paired_matrix(matrix, dry_run=False, say=print, train=None, train_group=None, overwrite=False):
    """`runner.run_matrix` with paired groups: returns (runs, {"skip"/"resume"/"start"/"refused": count
    of runs}, [(run, error message)] of failed runs, a diverged member included). A group
    that starts over moves its members' old outputs aside (engine/run_folder.py), never
    deleting them; a member whose config changed is refused unless `overwrite`."""
    runs = plan_runs(matrix)
    teachers, groups = paired_groups(runs)
    counts, failures = {"skip": 0, "resume": 0, "start": 0, "refused": 0}, []
    for i, run in enumerate(teachers, 1):
        run_one(run, f"[teacher {i}/{len(teachers)}]", counts, failures, dry_run, say, train, show_folder=False,
                overwrite=overwrite)
    for i, members in enumerate(groups, 1):
        run_group(members, f"[group {i}/{len(groups)}]", counts, failures, dry_run, say, train_group, overwrite)
    return runs, counts, failures


def run_group(members, head, counts, failures, dry_run=False, say=print, train_group=None, overwrite=False):
    """`runner.run_one` for one paired group: claim every member (all or none), decide, train."""
    head = f"{head} {members[0].pair} | seed {members[0].seed}"

    def work():
        decide_and_train_group(members, head, counts, failures, dry_run, say, train_group, overwrite)

    if dry_run:
        work()
    else:
        run_claimed(members, head, counts, say, work)


def decide_and_train_group(members, head, counts, failures, dry_run, say, train_group, overwrite=False):
    cfgs = [run.cfg() for run in members]
    try:
        decided = [member_action(run, cfg, overwrite) for run, cfg in zip(members, cfgs)]
    except UserError as err:  # a member's config changed and no --overwrite
        say(f"{head}: refused: {err}")
        counts["refused"] = counts.get("refused", 0) + len(members)
        failures.extend((run, str(err)) for run in members)
        return
    action = group_action([a for a, _ in decided])
    counts[action] += len(members)
    say(f"{head}: {action} ({'; '.join(f'{r.method}: {why}' for r, (_, why) in zip(members, decided))})")
    if dry_run or action == "skip":
        return
    if not attempt(head, members, failures, say, lambda: execute_group(members, cfgs, action, train_group)):
        return
    for run in members:
        meta = read_run_json(run.folder)
        if meta.get("status") != "complete":
            say(f"{head}: {run.method} stopped: {meta.get('error')}")
            failures.append((run, meta.get("error", "stopped")))


# ---------------------------------------------------------------- the table
@dataclass
class PairedDiff:
    method: str
    pair: str
    baseline: str
    seeds: List[int] = field(default_factory=list)  # seeds where both runs are complete
    diffs: List[float] = field(default_factory=list)  # method - baseline, per seed
    mean: Optional[float] = None
    std: Optional[float] = None  # sample std of the paired differences (None for n < 2)
    unpaired_std: Optional[float] = None  # sqrt(s_method^2 + s_baseline^2) over the same seeds


def choose_baseline(methods, baseline=None):
    """The named baseline (Vanilla and NONE name the vanilla student's row, spec.find_method;
    ConfigError if absent), else the vanilla student, else the first."""
    if baseline is not None:
        found = find_method(methods, baseline)
        if found is None:
            raise ConfigError(f"--baseline {baseline} is not a method of this benchmark "
                              f"({', '.join(methods)}); name one of them")
        return found
    return next((m for m in methods if m.lower() in VANILLA_NAMES), methods[0] if methods else None)


def paired_differences(results, baseline=None, methods=None, pairs=None):
    """[PairedDiff] for every non-baseline student method x pair (module docstring)."""
    done = [r for r in results if r.complete and r.role != TEACHER_ROLE and r.seed is not None]
    found = list(dict.fromkeys(r.method for r in done))
    methods = [m for m in (methods or found) if m in found] or found
    pairs = [p for p in (pairs or []) if any(r.pair == p for r in done)] or list(dict.fromkeys(r.pair for r in done))
    base = choose_baseline(methods, baseline)
    score = {(r.method, r.pair, r.seed): r.best_top1 for r in done}
    table = []
    for method in methods:
        if method == base:
            continue
        for pair in pairs:
            diff = PairedDiff(method, pair, base)
            diff.seeds = sorted(s for (m, p, s) in score if (m, p) == (method, pair) and (base, pair, s) in score)
            if diff.seeds:
                mine = [score[(method, pair, s)] for s in diff.seeds]
                theirs = [score[(base, pair, s)] for s in diff.seeds]
                diff.diffs = [a - b for a, b in zip(mine, theirs)]
                diff.mean, diff.std = mean_std(diff.diffs)
                if len(diff.seeds) > 1:
                    diff.unpaired_std = math.hypot(mean_std(mine)[1], mean_std(theirs)[1])
            table.append(diff)
    return table


def format_diff(diff):
    if diff.mean is None:
        return "—"
    text = f"{diff.mean:+.2f}" + ("" if diff.std is None else f" ± {diff.std:.2f}")
    extra = [f"n = {len(diff.seeds)}"] + ([f"unpaired ± {diff.unpaired_std:.2f}"] if diff.unpaired_std is not None
                                         else [])
    return f"{text} ({'; '.join(extra)})"


def paired_table(diffs):
    """Markdown: one row per method, one column per pair."""
    if not diffs:
        return "(no paired differences: no method has complete runs beside the baseline's on the same seed)"
    methods = list(dict.fromkeys(d.method for d in diffs))
    pairs = list(dict.fromkeys(d.pair for d in diffs))
    cell = {(d.method, d.pair): d for d in diffs}
    lines = ["| " + " | ".join([f"Method − {diffs[0].baseline}"] + pairs) + " |",
             "| " + " | ".join([":--"] + [":-:"] * len(pairs)) + " |"]
    for method in methods:
        row = [method] + [format_diff(cell[(method, p)]) if (method, p) in cell else "" for p in pairs]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


CAPTION = ("Best test top-1 (%) of each method minus the baseline's on the same seed (one data stream and one "
           "teacher pass per seed): mean ± sample std over seeds; 'unpaired ±' is the spread the same difference "
           "would have if the runs were independent, sqrt(s_method² + s_baseline²).")


def write_paired_report(results, out_dir, baseline=None, methods=None, pairs=None, replace=False):
    """Write paired.md and paired.json into `out_dir`; returns (diffs, {"md": path, "json": path}),
    with "replaced" where older ones went (report_checks.guard_replace, as for results.*)."""
    diffs = paired_differences(results, baseline, methods, pairs)
    paths = {kind: os.path.join(out_dir, f"paired.{kind}") for kind in ("md", "json")}
    texts = {"md": "\n".join(["# Paired differences", "", paired_table(diffs), "", CAPTION, ""]),
             "json": json.dumps({"metric": "best test top-1 (%), method minus baseline on the same seed",
                                 "differences": [asdict(d) for d in diffs]}, indent=2) + "\n"}
    shown = {(d.method, d.pair) for d in diffs if d.mean is not None}
    with writing_into(out_dir, "--out"):
        os.makedirs(out_dir, exist_ok=True)
        moved = guard_replace(out_dir, "paired", shown_cells(paths["json"], "differences", "mean"), shown, replace)
        for kind, path in paths.items():
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(texts[kind])
            os.replace(tmp, path)
    if moved:
        paths["replaced"] = moved
    return diffs, paths


# ---------------------------------------------------------------- speed
def same_student(folder_a, folder_b):
    """Whether two run folders' student_latest weights are bit-identical."""
    import torch

    from ..runtime.checkpoint_io import extract_state_dict, load_checkpoint

    a, b = (extract_state_dict(load_checkpoint(os.path.join(f, "student_latest"))) for f in (folder_a, folder_b))
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class TeacherClock:
    """Total wall time of the forwards of every teacher built while the clock is `active()`
    (forward hooks on the teacher modules `engine.build.build_models` returns). On CUDA the
    hooks record events, read once at the end, so the clock adds no host sync to a step."""

    def __init__(self):
        self.cpu_s = 0.0
        self.events = []  # (start, end) CUDA event pairs
        self._started = None

    def _pre(self, module, args):
        if args and getattr(args[0], "is_cuda", False):
            import torch

            start = torch.cuda.Event(enable_timing=True)
            start.record()
            self._started = start
        else:
            self._started = time.perf_counter()

    def _post(self, module, args, output):
        if isinstance(self._started, float):
            self.cpu_s += time.perf_counter() - self._started
        else:
            import torch

            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self.events.append((self._started, end))

    def attach(self, teacher):
        teacher.register_forward_pre_hook(self._pre)
        teacher.register_forward_hook(self._post)
        return teacher

    @contextlib.contextmanager
    def active(self):
        from ..engine import build

        real = build.build_models

        def timed_models(cfg, num_classes):
            student, teacher = real(cfg, num_classes)
            return student, (None if teacher is None else self.attach(teacher))

        build.build_models = timed_models
        try:
            yield self
        finally:
            build.build_models = real

    def seconds(self):
        if self.events:
            self.events[-1][1].synchronize()
        return self.cpu_s + sum(start.elapsed_time(end) for start, end in self.events) / 1000.0


def teacher_only_ratio(solo_s, solo_teacher_s, paired_teacher_s):
    """solo / paired if the group saved exactly the teacher passes it does not repeat."""
    return solo_s / max(solo_s - (solo_teacher_s - paired_teacher_s), 1e-12)


def time_paired_vs_solo(solo_cfgs, paired_cfgs, labels, train=None, train_group=None, say=print,
                        paired_first=False):
    """Train `solo_cfgs` one after another and `paired_cfgs` (the same runs in other folders)
    as one group, each from scratch (the group first with `paired_first`); returns the wall
    times, the teachers' forward times, best top-1s, the ratio solo/paired (and the
    teacher-only ratio, module docstring) and whether each student's weights came out
    identical in both modes."""
    from ..engine.build import train_paired
    from ..engine.build import train as train_solo
    from ..engine.run_folder import run_folder

    train, train_group = train or train_solo, train_group or train_paired
    rows, timed = [], {}

    def solo():
        for label, cfg in zip(labels, solo_cfgs):
            say(f"solo: {label}")
            with TeacherClock().active() as clock:
                start = time.perf_counter()
                best = train(cfg, overwrite=True)
                seconds = time.perf_counter() - start
            rows.append({"method": label, "solo_s": seconds, "solo_teacher_s": clock.seconds(),
                         "solo_best_top1": best})

    def paired():
        say(f"paired: {', '.join(labels)}")
        with TeacherClock().active() as clock:
            start = time.perf_counter()
            timed["bests"] = train_group(paired_cfgs, overwrite=True)
            timed["paired_s"] = time.perf_counter() - start
        timed["paired_teacher_s"] = clock.seconds()

    for part in ((paired, solo) if paired_first else (solo, paired)):
        part()
    bests, paired_s = timed["bests"], timed["paired_s"]
    for row, best, a, b in zip(rows, bests, solo_cfgs, paired_cfgs):
        row["paired_best_top1"] = best
        row["same_weights"] = same_student(run_folder(a), run_folder(b))
    solo_s = sum(row["solo_s"] for row in rows)
    solo_teacher_s = sum(row["solo_teacher_s"] for row in rows)
    return {"runs": rows, "solo_total_s": solo_s, "paired_s": paired_s, "ratio": solo_s / paired_s,
            "solo_teacher_s": solo_teacher_s, "paired_teacher_s": timed["paired_teacher_s"],
            "teacher_only_ratio": teacher_only_ratio(solo_s, solo_teacher_s, timed["paired_teacher_s"]),
            "order": "paired first" if paired_first else "solo first"}


def format_speed(result):
    """The speed result as printable lines."""
    lines = [f"{'method':<12} {'solo s':>8} {'teacher s':>10} {'solo top-1':>11} {'paired top-1':>13}  weights",
             "-" * 71]
    for row in result["runs"]:
        paired = "stopped" if row["paired_best_top1"] is None else f"{row['paired_best_top1']:.2f}"
        lines.append(f"{row['method']:<12} {row['solo_s']:>8.1f} {row['solo_teacher_s']:>10.1f} "
                     f"{row['solo_best_top1']:>11.2f} {paired:>13}  "
                     + ("identical" if row["same_weights"] else "differ"))
    lines += ["-" * 71, f"{len(result['runs'])} solo runs: {result['solo_total_s']:.1f} s (teacher "
              f"{result['solo_teacher_s']:.1f} s) | paired group: {result['paired_s']:.1f} s (teacher "
              f"{result['paired_teacher_s']:.1f} s)",
              f"solo / paired = {result['ratio']:.2f}x ({result['order']}); saving only the repeated teacher "
              f"passes would give {result['teacher_only_ratio']:.2f}x"]
    return lines
