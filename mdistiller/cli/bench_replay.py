"""Wall time of a table of logit methods three ways, in one invocation: solo runs one after
another (each runs its teacher), one paired group (one teacher pass per batch), and replay (a
cache job writes the teacher's logits once per stream, then each run reads them).

    python tools/bench_replay.py --root /tmp/c100 [--methods KD DKD MLKD SLD] [--pair res32x4_res8x4] \\
        [--train-subset 1000] [--test-subset 500] [--epochs 1] [--threads N] [--repeat N] [KEY VALUE ...]

The arguments are tools/bench_paired.py's (its docstring: configs, random teacher, warm-up).
Each repeat writes its caches to a new folder under <out>/teacher_cache/ and counts the cache
jobs' time in the replay total. Prints the table (seconds, best top-1 in the three modes, and
whether each replayed student is bit-identical to its solo run) and the wall-time ratios, and
writes them with the machine as JSON (<out>/bench_replay.json).
Exit codes: 0 done, 2 bad input (one `error: ...` line).
"""
import os
import sys
import time

from ..errors import UserError
from .bench_paired import build_cfgs, machine, parse_args, random_teacher, write_result

METHODS = ["KD", "DKD", "MLKD", "SLD"]


def measure(args, weights, repeat):
    """One repeat: solo and paired (alternating which goes first), then replay."""
    from ..benchmark.paired_runs import time_paired_vs_solo
    from ..benchmark.replay_bench import time_replay

    labels, solo, paired = build_cfgs(args, ["DISTILLER.TEACHER_WEIGHTS", weights])
    cache = os.path.join(args.out, "teacher_cache", f"{time.strftime('%Y%m%d-%H%M%S')}-{repeat}")
    _, replay, _ = build_cfgs(args, ["DISTILLER.TEACHER_WEIGHTS", weights, "EXPERIMENT.PROJECT", "replay",
                                     "DISTILLER.TEACHER_CACHE", cache])
    speed = time_paired_vs_solo(solo, paired, labels, paired_first=repeat % 2 == 1)
    return speed, time_replay(replay, solo, labels)


def main(argv=None):
    args = parse_args(argv, "bench_replay", "solo vs paired vs teacher-output replay wall time", methods=METHODS,
                      out="output/bench_replay")
    try:
        import torch

        from ..benchmark.replay_bench import format_replay
        from ..data.sources import build_sources
        from ..engine.build import train_paired
        from ..engine.device import resolve_device

        if args.threads:
            torch.set_num_threads(args.threads)
        _, probe, _ = build_cfgs(args)
        classes = build_sources(probe[0])[2]  # decodes/caches the dataset before any clock starts
        weights = args.teacher_weights or random_teacher(probe[0], len(classes), args.out)
        batch = probe[0].SOLVER.BATCH_SIZE
        _, warm, _ = build_cfgs(args, ["DISTILLER.TEACHER_WEIGHTS", weights, "EXPERIMENT.PROJECT", "warmup",
                                       "DATASET.TRAIN_SUBSET", 2 * batch, "DATASET.TEST_SUBSET", batch,
                                       "SOLVER.EPOCHS", 1])
        train_paired(warm, overwrite=True)
        results = []
        for i in range(args.repeat):
            speed, replay = measure(args, weights, i)
            results.append({"speed": speed, "replay": replay})
            print()
            for line in format_replay(speed, replay):
                print(line)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    minima = {mode: min(pick(r) for r in results) for mode, pick in (
        ("solo", lambda r: r["speed"]["solo_total_s"]), ("paired", lambda r: r["speed"]["paired_s"]),
        ("replay", lambda r: r["replay"]["replay_total_s"]))}
    result = {"repeats": results, "minima_s": minima, "replay_over_solo": minima["replay"] / minima["solo"],
              "replay_over_paired": minima["replay"] / minima["paired"],
              "machine": machine(resolve_device(probe[0].DEVICE)), "teacher_weights": weights, "pair": args.pair,
              "methods": args.methods, "train_subset": args.train_subset, "test_subset": args.test_subset,
              "epochs": args.epochs, "opts": list(args.opts or [])}
    print(f"\nover {args.repeat} measurement(s), minima: solo {minima['solo']:.1f} s, paired {minima['paired']:.1f} s, "
          f"replay {minima['replay']:.1f} s -> replay / solo = {result['replay_over_solo']:.2f}x, "
          f"replay / paired = {result['replay_over_paired']:.2f}x")
    write_result(result, args.json or os.path.join(args.out, "bench_replay.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
