"""tools/*.py loaded as modules (their `main(argv)` called in-process), and a train command line."""
import importlib.util
import os

from helpers.tiny import REPO


def load_tool(name):
    """tools/<name>.py as a fresh module (not registered in sys.modules)."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", os.path.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def common(root, prefix, name, *extra):
    """tools/train.py arguments for one quiet CPU epoch of resnet8 on the image folder `root`."""
    return ["--quiet", "DEVICE", "cpu", "DATASET.TYPE", "imagefolder", "DATASET.ROOT", root,
            "DATASET.NUM_WORKERS", "0", "SOLVER.BATCH_SIZE", "8", "SOLVER.EPOCHS", "1", "LOG.PREFIX", str(prefix),
            "EXPERIMENT.PROJECT", "cli", "EXPERIMENT.NAME", name, "DISTILLER.STUDENT", "resnet8", *extra]
