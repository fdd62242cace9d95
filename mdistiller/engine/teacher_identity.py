"""Which teacher a run learned from: the sha256 of the teacher weights' file content.

A path says nothing about content: retraining a teacher with `--overwrite` puts other weights
at the same path, and a student distilled from the old ones would still look complete. So a
run records, in its folder's `teacher.json`, the file its teacher weights came from and that
file's digest (`record_teacher`, when its logs open), and `teacher_change` compares that record
with what the file holds now. Every reader goes through `teacher_change`: a resume refuses a
run whose teacher changed (engine/run_folder.py `check_start`), the benchmark neither skips
nor resumes it (benchmark/runner.py `decide`), and reports flag its cell (benchmark/collect.py).

A run has no record when it has no teacher, when its teacher's weights are downloaded (timm,
torchvision) rather than read from a file, or when it was written by mdistiller or before this
record existed: there is then nothing to compare, and nothing is reported.
"""
import json
import os

from ..errors import UserError
from ..runtime.digest import file_sha256
from ..runtime.safe_write import read_json_object, write_text_atomic

TEACHER_FILE = "teacher.json"
SHOWN_DIGITS = 12  # of a digest in messages
_digests = {}  # (real path, size, mtime, inode) -> sha256: a benchmark asks about one teacher many times


def weights_digest(path):
    """sha256 (hex) of the file at `path`."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _digests:
        _digests[key] = file_sha256(path)
    return _digests[key]


def current_identity(cfg):
    """{"weights": path, "sha256": digest} of the file cfg's teacher is loaded from now, or None
    (no teacher, downloaded weights, or no such file: loading it fails on its own)."""
    from ..distillers import teacher_required  # the registry and the zoo: only when a teacher is asked about
    from ..models.teacher import teacher_checkpoint

    d = cfg.DISTILLER
    try:
        path = teacher_checkpoint(d.TEACHER, cfg.DATASET.TYPE, d.TEACHER_WEIGHTS, d.TEACHER_KWARGS) \
            if teacher_required(cfg) else None
        return None if path is None else {"weights": os.path.abspath(path), "sha256": weights_digest(path)}
    except (UserError, OSError):
        return None


def recorded_identity(folder):
    """The teacher.json of a run folder as a dict, or None (absent or unreadable)."""
    data = read_json_object(os.path.join(folder, TEACHER_FILE))
    return data if data is not None and isinstance(data.get("sha256"), str) else None


def record_teacher(folder, cfg, resumed=False):
    """Write teacher.json for a run that starts (or resumes) now. A resumed run without a record
    gets none: the epochs it already trained may have come from another teacher."""
    identity = current_identity(cfg)
    if identity is None or (resumed and recorded_identity(folder) is None):
        return
    write_text_atomic(os.path.join(folder, TEACHER_FILE), json.dumps(identity, indent=2) + "\n")


def teacher_change(folder, cfg):
    """None when the run in `folder` learned from the teacher weights `cfg` loads now (or when
    either side is unknown), else one phrase saying what changed."""
    before, now = recorded_identity(folder), current_identity(cfg)
    if before is None or now is None or before["sha256"] == now["sha256"]:
        return None
    return (f"its teacher {now['weights']} now holds other weights than the ones it learned from "
            f"(sha256 {before['sha256'][:SHOWN_DIGITS]} then, {now['sha256'][:SHOWN_DIGITS]} now)")
