"""Print the feature shapes of a (teacher, student) pair and which feature distillers fit it.

    python tools/feature_shapes.py resnet32x4 resnet8x4
    python tools/feature_shapes.py resnet32x4 ShuffleV1 --cfg configs/cifar100/reviewkd.yaml
    python tools/feature_shapes.py ResNet34 ResNet18 --dataset imagenet

Each method's verdict is "fits" or the one-line error that building it would raise, e.g. which
channels differ or which config key to change (mdistiller/distillers/shapes.py).
"""
import sys

from ..config import load_cfg
from ..distillers.shapes import NUM_CLASSES, describe_pair, input_size_for
from ..errors import UserError
from . import add_config_arguments, new_parser, plugin_opts


def main(argv=None):
    from ..models import create_model, model_settings

    parser = new_parser("feature_shapes", __doc__.split("\n\n")[0])
    parser.add_argument("teacher", help="teacher architecture name, e.g. resnet32x4")
    parser.add_argument("student", help="student architecture name, e.g. resnet8x4")
    parser.add_argument("--dataset", default=None, help="cifar100 (default) | tiny_imagenet | imagenet")
    parser.add_argument("--cfg", default="", help="optional YAML whose method settings to check")
    add_config_arguments(parser, "config overrides KEY VALUE ..., e.g. DISTILLER.STUDENT_KWARGS \"{img_size: 32}\"")
    args = parser.parse_args(argv)
    try:
        opts = plugin_opts(args) + list(args.opts) + ["DISTILLER.TEACHER", args.teacher, "DISTILLER.STUDENT",
                                                      args.student]
        opts += ["DATASET.TYPE", args.dataset] if args.dataset else []
        cfg = load_cfg(args.cfg or None, opts)
        dataset, size = cfg.DATASET.TYPE, input_size_for(cfg) or (32, 32)
        num_classes = cfg.DATASET.NUM_CLASSES or NUM_CLASSES.get(dataset, 100)
        teacher = create_model(args.teacher, num_classes, dataset,
                               **{**model_settings(cfg, "TEACHER", size), "key": "the teacher argument"})
        student = create_model(args.student, num_classes, dataset,
                               **{**model_settings(cfg, "STUDENT", size), "key": "the student argument"})
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)  # the one-line message, no traceback
        return 2
    print(describe_pair(teacher, student, cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
