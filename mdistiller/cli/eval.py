"""Top-1 / top-5 accuracy and loss of a checkpoint on a dataset's test split.

    python tools/eval.py -m resnet8x4 -c output/distill/run/student_best -d cifar100 --root data
    python tools/eval.py -m resnet32x4 -d cifar100            (the model zoo's teacher: -c pretrain)

CKPT may be a student file (`student_best`, `student_latest`, `student_N`), a full run
checkpoint (`latest`, `best`, `epoch_N`: its student is evaluated) or an mdistiller teacher file
(`ckpt_epoch_240.pth`). Extra `KEY VALUE` config overrides (e.g. DEVICE cpu, SOLVER.AMP bf16)
may follow. Bad input prints one `error: ...` line and exits with code 2.
"""
import json
import math
import sys

from ..config import load_cfg
from ..errors import UserError
from . import add_config_arguments, new_parser, plugin_opts


def parse_args(argv=None):
    parser = new_parser("eval", "Evaluate a checkpoint on a test split.")
    parser.add_argument("-m", "--model", type=str, required=True, help="architecture name, e.g. resnet8x4")
    parser.add_argument("-c", "--ckpt", type=str, default="pretrain",
                        help="checkpoint file; 'pretrain' = the model zoo's teacher checkpoint")
    parser.add_argument("-d", "--dataset", type=str, default="cifar100",
                        choices=["cifar100", "imagenet", "tiny_imagenet", "imagefolder"])
    parser.add_argument("-bs", "--batch-size", type=int, default=64)
    parser.add_argument("--root", type=str, default="", help="dataset folder (DATASET.ROOT)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_config_arguments(parser)
    return parser.parse_args(argv)


def json_safe(result):
    """JSON has no NaN/inf: such a metric becomes null and `null_reason` says why."""
    bad = [k for k, v in result.items() if isinstance(v, float) and not math.isfinite(v)]
    if not bad:
        return result
    why = ("the test split is empty" if not result.get("count") else
           "the model's outputs are not finite (NaN/inf) on some test images")
    return {**{k: None if k in bad else v for k, v in result.items()},
            "null_reason": f"{', '.join(bad)}: {why}"}


def main(argv=None):
    args = parse_args(argv)
    try:
        opts = plugin_opts(args) + list(args.opts or []) + ["DATASET.TYPE", args.dataset, "DATASET.TEST.BATCH_SIZE", str(args.batch_size)]
        if args.root:
            opts += ["DATASET.ROOT", args.root]
        cfg = load_cfg(None, opts)
        from ..engine.evaluation import evaluate_checkpoint  # after the config: bad input fails fast

        result = evaluate_checkpoint(cfg, args.model, args.ckpt)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(json_safe(result)))
    else:
        print(f"{result['model']} {result['checkpoint']} on {result['dataset']} test ({result['count']} images): "
              f"top-1 {result['top1']:.2f} | top-5 {result['top5']:.2f} | loss {result['loss']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
