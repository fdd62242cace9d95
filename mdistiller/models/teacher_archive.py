"""Installing mdistiller's published teacher archive (`cifar_teachers.tar`) into `download_ckpts/`.

The archive comes from the network or from the user, so it is untrusted: before anything lands
in the destination, every member must be a plain file or folder under `cifar_teachers/`, named
`cifar_teachers/<name>_vanilla/ckpt_epoch_240.pth` for a zoo architecture (no absolute path, no
`..`, no link, device or fifo), and every checkpoint must load with the safe loader
(runtime/checkpoint_io.py: no pickled code runs) into its model strictly. Members are written
into a temporary folder inside the destination and checked there; only when all pass are they
moved into place, so a bad member means nothing is installed. An existing teacher file is kept
unless `overwrite`.
"""
import contextlib
import os
import posixpath
import shutil
import tarfile
import tempfile
from collections import namedtuple

from ..errors import ArchiveError, OutputError, UserError
from ..runtime.checkpoint_io import load_weights
from .cifar import CIFAR_TEACHER_DIR, cifar_model_dict, cifar_teacher_path

# mdistiller's README: "Download the cifar_teachers.tar at
# https://github.com/megvii-research/mdistiller/releases/tag/checkpoints"; this is that asset.
CIFAR_TEACHERS_URL = "https://github.com/megvii-research/mdistiller/releases/download/checkpoints/cifar_teachers.tar"
DEFAULT_DEST = os.path.dirname(CIFAR_TEACHER_DIR)  # download_ckpts
FOLDER = os.path.basename(CIFAR_TEACHER_DIR)  # cifar_teachers
CHECKPOINT = posixpath.basename(cifar_teacher_path("x"))  # ckpt_epoch_240.pth
MAX_PROBLEMS_SHOWN = 3

# A distillation config that needs each teacher, in the order the README presents them.
HEADLINE_CONFIGS = {
    "resnet32x4": "configs/cifar100/sld/res32x4_res8x4.yaml",
    "vgg13": "configs/cifar100/sld/vgg13_vgg8.yaml",
    "wrn_40_2": "configs/cifar100/sld/wrn40_2_wrn_16_2.yaml",
    "resnet56": "configs/cifar100/sld/res56_res20.yaml",
    "resnet110": "configs/cifar100/sld/res110_res32.yaml",
    "ResNet50": "configs/cifar100/sld/res50_mv2.yaml",
}

Installed = namedtuple("Installed", "installed kept")  # lists of (teacher name, path)


def _parts(name):
    return [p for p in name.split("/") if p not in ("", ".")]


def _relative(arch):
    """cifar_teachers/<arch>_vanilla/ckpt_epoch_240.pth: where a teacher goes under the destination."""
    return cifar_teacher_path(arch)[len(DEFAULT_DEST) + 1:]


def teacher_of_member(name):
    """The zoo teacher a member path stands for, or a reason why it is not allowed."""
    if name.startswith("/") or "\\" in name:
        return None, "an absolute or non-POSIX path"
    parts = _parts(name)
    if ".." in parts:
        return None, "a path with '..'"
    if not parts or parts[0] != FOLDER:
        return None, f"outside {FOLDER}/"
    if len(parts) == 3 and parts[2] == CHECKPOINT and parts[1].endswith("_vanilla"):
        arch = parts[1][:-len("_vanilla")]
        if arch in cifar_model_dict:
            return arch, None
        return None, f"an architecture the model zoo does not have ({arch})"
    return None, f"not {FOLDER}/<name>_vanilla/{CHECKPOINT}"


def _is_layout_folder(name):
    """`cifar_teachers/` or `cifar_teachers/<name>_vanilla/`, the folders a tar lists before its files."""
    parts = _parts(name)
    if name.startswith("/") or ".." in parts or not parts or parts[0] != FOLDER:
        return False
    return len(parts) == 1 or (len(parts) == 2 and parts[1].endswith("_vanilla"))


def plan_members(members):
    """({member: teacher name} of the checkpoint files, [problem lines]) for a list of TarInfo."""
    files, problems = {}, []
    for m in members:
        if m.isdir() and _is_layout_folder(m.name):
            continue
        arch, reason = teacher_of_member(m.name)
        if m.issym() or m.islnk():
            reason = "a link"
        elif not (m.isfile() or m.isdir()):
            reason = "a device or fifo"
        elif m.isdir():
            reason = reason or "a folder where a checkpoint file belongs"
        if reason:
            problems.append(f"{m.name} is {reason}")
        else:
            files[m.name] = arch
    if not files and not problems:
        problems.append(f"it holds no {FOLDER}/<name>_vanilla/{CHECKPOINT}")
    return files, problems


def _check_teacher(arch, path):
    """None when `path` loads safely into `arch` strictly, else the one-line reason."""
    constructor, _ = cifar_model_dict[arch]
    try:
        load_weights(constructor(num_classes=100), path)
    except UserError as err:
        # "checkpoint <staging path> holds ...; re-save it ...": the staging path and the advice
        # for a user's own file mean nothing here; keep what is wrong.
        return str(err).replace(f"checkpoint {path} ", "").split("; ")[0]
    return None


def _extract_checked(archive, files, staging):
    """Write each checkpoint member into `staging` (no tar metadata is applied) and check it."""
    problems = []
    for member in archive.getmembers():
        if member.name not in files:
            continue
        arch = files[member.name]
        target = os.path.join(staging, _relative(arch))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            with archive.extractfile(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
        except (tarfile.TarError, EOFError) as err:
            problems.append(f"{member.name} could not be read ({err}; a truncated archive?)")
            continue
        reason = _check_teacher(arch, target)
        if reason:
            problems.append(f"{member.name}: {reason}")
    return problems


def _refuse(archive_path, problems):
    shown = "; ".join(problems[:MAX_PROBLEMS_SHOWN])
    more = f" (and {len(problems) - MAX_PROBLEMS_SHOWN} more)" if len(problems) > MAX_PROBLEMS_SHOWN else ""
    raise ArchiveError(f"refused {archive_path}, nothing was installed: {shown}{more}; "
                       f"use mdistiller's official {FOLDER}.tar ({CIFAR_TEACHERS_URL})")


def install_archive(archive_path, dest=DEFAULT_DEST, overwrite=False):
    """Check and install the teachers of `archive_path` under `dest`; returns Installed."""
    try:
        archive = tarfile.open(archive_path, "r:*")
        members = archive.getmembers()
    except (tarfile.TarError, EOFError, OSError) as err:
        # tarfile lists each compression it tried, one a line; the last is plain tar's reason
        reason = (str(err).strip().splitlines() or [type(err).__name__])[-1].lstrip("- ")[:200]
        raise ArchiveError(f"{archive_path} is not a readable tar archive ({reason}); "
                           f"download {CIFAR_TEACHERS_URL} again") from None
    with archive:
        files, problems = plan_members(members)
        if problems:
            _refuse(archive_path, problems)
        with _writing_into(dest):
            os.makedirs(dest, exist_ok=True)
            staging = tempfile.mkdtemp(prefix=".fetch-teachers-", dir=dest)
        try:
            problems = _extract_checked(archive, files, staging)
            if problems:
                _refuse(archive_path, problems)
            with _writing_into(dest):
                return _move_into_place(sorted(set(files.values())), staging, dest, overwrite)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _writing_into(dest):
    """A destination that cannot be written (a file in the way, no permission, full disk) is one line."""
    try:
        yield
    except OSError as err:
        raise OutputError(f"cannot install teachers into {dest} ({err.strerror or err}); "
                          "pass --dest a writable folder") from None


def _move_into_place(archs, staging, dest, overwrite):
    installed, kept = [], []
    for arch in archs:
        relative = _relative(arch)
        target = os.path.join(dest, relative)
        if os.path.exists(target) and not overwrite:
            kept.append((arch, target))
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(os.path.join(staging, relative), target)
        installed.append((arch, target))
    return Installed(installed, kept)


def headline_command(archs):
    """The distillation command that the teachers `archs` make work (None when none has one)."""
    for arch, config in HEADLINE_CONFIGS.items():
        if arch in archs:
            return f"python tools/train.py --cfg {config}"
    return None
