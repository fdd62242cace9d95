"""Look inside a distillation: how a student compares with its teacher, in figures.

    python tools/analyze.py -c output/demo/sld/student_best
    python tools/analyze.py -c run/student_best -t teacher_run/student_best -d cifar100 --root data
    python tools/analyze.py -c ckpt.pth -m resnet8x4 -t pretrain --teacher-model resnet32x4 -d cifar100

Writes into --out (default: <checkpoint folder>/analysis/): correlation_gap.png (DKD-style
teacher-student logit correlation gap), per_class_accuracy.png, reliability.png (with ECE),
rescued_pairs.png (teacher errors the student fixes), tsne.png (with scikit-learn),
swap_rates.png (for SLD runs: the swap statistics of the run's worklog) and analysis.md.
A checkpoint inside a run folder brings the run's config (dataset, architectures and their
DISTILLER.*_KWARGS / _FEATURES) and its teacher; -m/-t/--teacher-model/-d override them.
Trailing KEY VALUE pairs override the config (e.g. DEVICE cpu, DATASET.TEST_SUBSET 1000). A run
folder is data: the plug-in modules its config.yaml lists (PLUGINS) are imported only when
named with --plugin, or all of them with --allow-plugins. Needs matplotlib. Bad input prints
one `error: ...` line and exits with code 2.
"""
import sys

from ..errors import UserError
from . import add_config_arguments, new_parser, plugin_opts

DATASETS = ["cifar100", "imagenet", "tiny_imagenet", "imagefolder", "demo"]


def parse_args(argv=None):
    p = new_parser("analyze", "Compare a distilled student with its teacher: figures + analysis.md.")
    p.add_argument("-c", "--ckpt", required=True, help="student checkpoint (student_best, latest, ...)")
    p.add_argument("-t", "--teacher", help="teacher checkpoint, or 'pretrain' for the model zoo's "
                                           "(default: the teacher inside the run's latest)")
    p.add_argument("-d", "--dataset", choices=DATASETS, help="dataset whose test split is used (default: the run's)")
    p.add_argument("--root", help="dataset folder (DATASET.ROOT)")
    p.add_argument("-m", "--model", help="student architecture (default: the run's DISTILLER.STUDENT)")
    p.add_argument("--teacher-model", help="teacher architecture (default: the run's DISTILLER.TEACHER)")
    p.add_argument("-o", "--out", help="output folder (default: <checkpoint folder>/analysis)")
    p.add_argument("--tsne-samples", type=int, help="test images in the t-SNE plot (default 2000; 0: no t-SNE; "
                                                     "it needs scikit-learn)")
    p.add_argument("--max-diff", type=float, help="top of the correlation-gap colour scale (default 3.0, "
                                                  "fixed so that heat maps of different runs compare)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--allow-plugins", action="store_true",
                   help="import every plug-in module the run's config.yaml lists (PLUGINS), which runs their code; "
                        "without it, only those named with --plugin are imported")
    add_config_arguments(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        from ..analysis.analyze import analyze

        opts = plugin_opts(args)  # first: it takes a trailing --plugin out of args.opts
        allow_plugins = args.allow_plugins or "--allow-plugins" in args.opts
        opts += [o for o in args.opts if o != "--allow-plugins"]
        tuning = {k: v for k, v in (("tsne_samples", args.tsne_samples), ("max_diff", args.max_diff)) if v is not None}
        result = analyze(args.ckpt, args.dataset, args.root, args.model, args.teacher, args.teacher_model, args.out,
                         opts=opts, progress=not args.quiet, allow_plugins=allow_plugins, **tuning)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{result.student} vs teacher {result.teacher} on {result.dataset} test ({len(result.targets)} images): "
          f"top-1 student {result.top1['student']:.2f} teacher {result.top1['teacher']:.2f} | "
          f"ECE student {result.reliability['student'].ece:.2f} teacher {result.reliability['teacher'].ece:.2f}")
    for note in result.notes:
        print(note)
    for kind, path in result.files.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
