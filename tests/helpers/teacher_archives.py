"""mdistiller-layout teacher archives (cifar_teachers/<name>_vanilla/ckpt_epoch_240.pth) built in
a test: real zoo models with random weights, saved the way RepDistiller/mdistiller save them,
plus the hostile members an untrusted archive may carry."""
import io
import tarfile

import torch

from mdistiller.models import create_model


def teacher_bytes(arch, seed=0):
    """A teacher checkpoint of zoo architecture `arch` as bytes ({"model", "epoch", "accuracy"})."""
    torch.manual_seed(seed)
    buffer = io.BytesIO()
    torch.save({"model": create_model(arch, 100, "cifar100").state_dict(), "epoch": 240, "accuracy": 70.0}, buffer)
    return buffer.getvalue()


def member_path(arch):
    return f"cifar_teachers/{arch}_vanilla/ckpt_epoch_240.pth"


class OpensAFile:
    """Unpickling this creates `path` (builtins.open): the marker that pickled code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def code_bytes(marker):
    """A checkpoint whose pickle calls open(marker, "w") when loaded unsafely."""
    buffer = io.BytesIO()
    torch.save({"model": OpensAFile(str(marker))}, buffer)
    return buffer.getvalue()


def tar_bytes(files=(), links=(), folders=True):
    """A tar archive: `files` [(name, bytes)], `links` [(name, target)] as symlinks; with
    `folders` the cifar_teachers/ folder entries come first as in mdistiller's archive."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        if folders:
            for name in sorted({n.rsplit("/", 1)[0] for n, _ in files if n.startswith("cifar_teachers/")}
                               | {"cifar_teachers"}):
                info = tarfile.TarInfo(name)
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()
