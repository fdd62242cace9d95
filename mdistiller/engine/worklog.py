"""mdistiller's text log `worklog.txt`: written here by the trainer, read here by reports.

Writing: worklog.txt is appended once per epoch in mdistiller's format, so scripts that parse mdistiller
logs keep working. Distillers that log statistics (SLD, the *_SWAP variants) add their `swap.*`
lines after mdistiller's, so only their blocks differ from mdistiller's bytes:

    -------------------------
    epoch: 1
    lr: 0.03
    train_acc: 11.53
    ...
    -------------------------

and `best_acc\\t<value>` (no newline) when a run finishes.

Reading (`parse_worklog`, `read_worklog`) is lenient about what the file holds (any `name:
number` keys, CRLF line ends, a resumed run that appended after a `best_acc` line, repeated
epochs where the later block wins) and strict about what it believes: a block that lost its
closing rule was cut mid-write and is dropped, and a log without `best_acc` marks a run that did
not finish. Every such finding is listed in `problems` rather than raised, so a report over many
folders never stops at one bad file. mdistiller's own folders read the same way.
"""
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

RULE = "-" * 25
_BLOCK = re.compile(r"-{25}\r?\nepoch: (\d+)\r?\n.*?-{25}\r?\n", re.DOTALL)
RULE_LINE = re.compile(r"-{25,}")  # the reader takes longer rules too
BEST = re.compile(r"best_acc\s+(\S+)")
PAIR = re.compile(r"([A-Za-z_][\w.]*)\s*:\s*(\S+)$")


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
        f.write(best_line(best_acc))


def best_line(best_acc):
    return "best_acc\t" + "{:.2f}".format(float(best_acc))


def read_text(path):
    """The worklog's text as written ('' when there is none yet)."""
    try:
        with open(path, newline="") as f:
            return f.read()
    except FileNotFoundError:
        return ""


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


@dataclass
class Worklog:
    epochs: List[Dict[str, float]] = field(default_factory=list)  # one dict per epoch, sorted by epoch
    best_acc: Optional[float] = None  # the closing `best_acc` line (None: run did not finish)
    problems: List[str] = field(default_factory=list)

    @property
    def finished(self):
        return self.best_acc is not None

    @property
    def last_epoch(self):
        return int(self.epochs[-1]["epoch"]) if self.epochs else 0

    def series(self, key):
        """[(epoch, value)] for one key, skipping epochs that lack it."""
        return [(int(e["epoch"]), e[key]) for e in self.epochs if key in e]


def _number(text):
    try:
        return float(text)  # nan/inf kept: a diverged run is a result too
    except ValueError:
        return None


def parse_worklog(text):
    """Parse the text of a worklog.txt (see the module docstring)."""
    # A run resumed after finishing appends its next rule right after the best_acc line.
    text = RULE_LINE.sub(lambda m: "\n" + m.group(0) + "\n", text.replace("\r\n", "\n"))
    log = Worklog()
    by_epoch, block, bad = {}, None, 0
    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            continue
        if RULE_LINE.fullmatch(line):
            if block is None:
                block = {}  # opening rule
            elif block:  # closing rule
                if "epoch" in block:
                    by_epoch[int(block["epoch"])] = block
                    log.best_acc = None  # only a best_acc line after the last block counts
                else:
                    bad += 1
                block = None
            continue  # (a rule right after an opening one is a stray duplicate)
        best = BEST.fullmatch(line)
        if best and block is None:
            log.best_acc = _number(best.group(1))
            if log.best_acc is None:
                log.problems.append(f"best_acc line {line!r} has no number")
            continue
        pair = PAIR.fullmatch(line)
        value = _number(pair.group(2)) if pair else None
        if block is None or value is None:
            bad += 1
            continue
        block[pair.group(1)] = value
    if block:
        where = f"epoch {int(block['epoch'])}" if "epoch" in block else "an epoch"
        log.problems.append(f"the block of {where} is cut off (no closing rule): file truncated mid-write")
    if bad:
        log.problems.append(f"{bad} unreadable line(s) skipped")
    log.epochs = [by_epoch[k] for k in sorted(by_epoch)]
    return log


def read_worklog(path):
    """Parse the file at `path`; a missing or unreadable file is a problem, not an exception."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_worklog(f.read())
    except FileNotFoundError:
        return Worklog(problems=["no worklog.txt"])
    except OSError as err:
        return Worklog(problems=[f"worklog.txt unreadable ({err.strerror or err})"])
