"""Run folders as the trainer leaves them (config.yaml and worklog.txt), written directly: for
the table and report tests, which read folders and need no training."""
import os

from mdistiller.config import dump_cfg, load_cfg
from mdistiller.engine.worklog import append_best, format_epoch_block


def fake_run(root, name, method, accs, epochs=240, finished=True, teacher="resnet32x4", student="resnet8x4",
             dataset="cifar100", subset=0, seed=0):
    """A run folder as the trainer leaves it: config.yaml and a worklog (accs = test top-1 per epoch)."""
    folder = os.path.join(root, name)
    os.makedirs(folder)
    cfg = load_cfg(None, ["DISTILLER.TYPE", method, "DISTILLER.TEACHER", teacher, "DISTILLER.STUDENT", student,
                          "DATASET.TYPE", dataset, "SOLVER.EPOCHS", epochs, "DATASET.TRAIN_SUBSET", subset,
                          "SEED", seed])
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        f.write(dump_cfg(cfg))
    with open(os.path.join(folder, "worklog.txt"), "w") as f:
        f.write("".join(format_epoch_block(e, 0.05, {"test_acc": acc, "test_acc_top5": 99.0})
                        for e, acc in enumerate(accs, 1)))
    if finished:
        append_best(os.path.join(folder, "worklog.txt"), max(accs))
    return folder
