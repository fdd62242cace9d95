"""mdistiller's text log (`worklog.txt`) and tensorboard events (`train.events`).

worklog.txt is appended once per epoch in mdistiller's format, so scripts that parse mdistiller
logs keep working. Distillers that log statistics (SLD, the *_SWAP variants) add their `swap.*`
lines after mdistiller's, so only their blocks differ from mdistiller's bytes:

    -------------------------
    epoch: 1
    lr: 0.03
    train_acc: 11.53
    ...
    -------------------------

and `best_acc\\t<value>` (no newline) when a run finishes.
"""
import os
import re

from tensorboardX import SummaryWriter

RULE = "-" * 25
_BLOCK = re.compile(r"-{25}\r?\nepoch: (\d+)\r?\n.*?-{25}\r?\n", re.DOTALL)


def format_epoch_block(epoch, lr, values):
    """One epoch's block; `values` is an ordered {name: number}."""
    lines = [RULE, f"epoch: {epoch}", "lr: {:.2f}".format(float(lr))]
    lines += ["{}: {:.2f}".format(name, float(value)) for name, value in values.items()]
    lines.append(RULE)
    return "".join(line + os.linesep for line in lines)


def append_epoch(path, epoch, lr, values):
    with open(path, "a") as f:
        f.write(format_epoch_block(epoch, lr, values))


def append_best(path, best_acc):
    with open(path, "a") as f:
        f.write("best_acc\t" + "{:.2f}".format(float(best_acc)))


def trim_worklog(path, last_epoch):
    """Keep only the blocks of epochs <= last_epoch (used on resume: an epoch that was logged
    but whose checkpoint was never committed is trained again and logged again; a finished
    run's best_acc line is rewritten when the run ends)."""
    if not os.path.isfile(path):
        return
    with open(path, newline="") as f:
        text = f.read()
    kept = "".join(m.group(0) for m in _BLOCK.finditer(text) if int(m.group(1)) <= last_epoch)
    if kept != text:
        tmp = path + ".tmp"
        with open(tmp, "w", newline="") as f:
            f.write(kept)
        os.replace(tmp, path)


class EventLog:
    """Tensorboard scalars in `<run>/train.events` (a folder, as in mdistiller)."""

    def __init__(self, folder):
        self.writer = SummaryWriter(folder)

    def scalars(self, values, step):
        for name, value in values.items():
            self.writer.add_scalar(name, float(value), step)

    def flush(self):
        self.writer.flush()

    def close(self):
        self.writer.close()
