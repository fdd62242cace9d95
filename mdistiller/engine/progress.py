"""What a person watching a run sees: a tqdm bar per epoch and a one-line epoch summary.

Bars go to stderr and only on rank 0; quiet mode (LOG.QUIET / --quiet) drops them and keeps
the summary lines, which suits CI logs.
"""
import sys

from tqdm import tqdm


class Bar:
    """A progress bar that can be switched off (then every call is a no-op)."""

    def __init__(self, total, desc, enabled):
        self.bar = tqdm(total=total, desc=desc, dynamic_ncols=True, leave=False, file=sys.stderr) if enabled else None

    def advance(self, n=1):
        if self.bar is not None:
            self.bar.update(n)

    def show(self, text):
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def say(message, enabled=True):
    """A line on stdout (rank 0 only: pass `enabled=info.is_main`); None prints nothing."""
    if enabled and message is not None:
        print(message, flush=True)


def epoch_summary(epoch, epochs, lr, train, test, best_acc, images_per_s, seconds):
    """One line per epoch, e.g.
    epoch 3/240 | lr 0.0500 | train loss 2.1034 acc 41.20 | test loss 1.9876 acc 45.31 top5 76.02 | best 45.31 | 2310 img/s | 21.7s"""
    return (f"epoch {epoch}/{epochs} | lr {lr:.4g} | train loss {train['loss']:.4f} acc {train['acc']:.2f} | "
            f"test loss {test['loss']:.4f} acc {test['top1']:.2f} top5 {test['top5']:.2f} | best {best_acc:.2f} | "
            f"{images_per_s:.0f} img/s | {seconds:.1f}s")
