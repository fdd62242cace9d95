"""Timing teacher-output replay (tools/bench_replay.py): the same students trained live one
after another, as one paired group, and replaying their teacher's logits from a cache that a
cache job writes first (engine/teacher_cache_job.py) — the cache job's time counted in full."""
import time

from .paired_runs import same_student


def time_replay(replay_cfgs, solo_cfgs, labels, say=print):
    """Write the teacher caches the runs need (one per view count; one in all on the fast
    loader), then train each run replaying it; returns the cache jobs' and each run's wall time,
    its best top-1 and whether its student came out bit-identical to the solo run's."""
    from ..distillers.inputs import input_views
    from ..engine.build import train
    from ..engine.run_folder import run_folder
    from ..engine.teacher_cache_job import write_teacher_cache

    streams = {}
    for cfg in replay_cfgs:
        streams.setdefault(input_views(cfg), cfg)
    if all(cfg.DATASET.LOADER == "fast" for cfg in replay_cfgs):  # one two-view cache serves one-view runs too
        streams = {max(streams): streams[max(streams)]}
    start = time.perf_counter()
    for views, cfg in sorted(streams.items()):
        say(f"teacher cache job: {views} view(s)")
        write_teacher_cache(cfg, views)
    cache_s = time.perf_counter() - start
    rows = []
    for label, cfg, solo in zip(labels, replay_cfgs, solo_cfgs):
        say(f"replay: {label}")
        start = time.perf_counter()
        best = train(cfg, overwrite=True)
        rows.append({"method": label, "replay_s": time.perf_counter() - start, "replay_best_top1": best,
                     "same_as_solo": same_student(run_folder(solo), run_folder(cfg))})
    return {"cache_s": cache_s, "streams": sorted(streams), "runs": rows,
            "replay_total_s": cache_s + sum(row["replay_s"] for row in rows)}


def format_replay(speed, replay):
    """The three modes side by side (speed: benchmark.paired_runs.time_paired_vs_solo's result)."""
    solo_s, paired_s, replay_s = speed["solo_total_s"], speed["paired_s"], replay["replay_total_s"]
    lines = [f"{'method':<8} {'solo s':>7} {'replay s':>9} {'solo top-1':>11} {'paired top-1':>13} "
             f"{'replay top-1':>13}  replay weights", "-" * 80]
    for row, rep in zip(speed["runs"], replay["runs"]):
        paired = "stopped" if row["paired_best_top1"] is None else f"{row['paired_best_top1']:.2f}"
        lines.append(f"{row['method']:<8} {row['solo_s']:>7.1f} {rep['replay_s']:>9.1f} {row['solo_best_top1']:>11.2f} "
                     f"{paired:>13} {rep['replay_best_top1']:>13.2f}  "
                     + ("identical to solo" if rep["same_as_solo"] else "differ from solo"))
    lines += ["-" * 80,
              f"solo {solo_s:.1f} s | paired {paired_s:.1f} s | replay {replay_s:.1f} s (cache job "
              f"{replay['cache_s']:.1f} s for {len(replay['streams'])} stream(s) + students)",
              f"replay / solo = {replay_s / solo_s:.2f}x, replay / paired = {replay_s / paired_s:.2f}x, "
              f"paired / solo = {paired_s / solo_s:.2f}x"]
    return lines
