"""Writing outputs safely, without torch: a failed write (full disk, read-only folder, no
permission) becomes one `OutputError` line naming the path (`writing`), files are written
whole to a temp file beside their final name first (`write_temp`: what a rename then publishes),
and text files are replaced atomically (`write_text_atomic`). runtime/checkpoint_io.py writes
checkpoints through them.
"""
import contextlib
import errno
import json
import os
import shutil
import tempfile

from ..errors import OutputError

_WRITE_FAILED = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
                 errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                 errno.EPERM: "permission denied", errno.EFBIG: "the file is larger than allowed"}
MIN_FREE_BYTES = 1 << 20  # less free space than this after a failed write: call the disk full


def _write_failure_reason(path, err):
    if isinstance(err, OSError) and err.errno in _WRITE_FAILED:
        return _WRITE_FAILED[err.errno]
    if isinstance(err, OSError) and err.errno:
        return os.strerror(err.errno)
    try:  # torch's zip writer reports a failed write without its errno ("unexpected pos ...")
        if shutil.disk_usage(os.path.dirname(os.path.abspath(path)) or ".").free < MIN_FREE_BYTES:
            return "the disk is full"
    except OSError:
        pass
    first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
    return f"the write failed: {first}"


@contextlib.contextmanager
def writing(path):
    """Turn a failed write of `path` (OSError, or the RuntimeError torch.save raises when its
    file write fails) into a one-line OutputError naming the path."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        if isinstance(err, RuntimeError) and "inline_container" not in str(err) and "write" not in str(err).lower():
            raise  # not a write failure: a bug, keep its traceback
        reason = _write_failure_reason(path, err)
        fix = "free space there or set LOG.PREFIX to another disk" if "full" in reason or "quota" in reason else \
            "set LOG.PREFIX to a writable folder"
        raise OutputError(f"cannot write {path}: {reason}; {fix}, then run again (with --resume to continue)") from None


def fsync_folder(folder):
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_umask():
    mask = os.umask(0)  # the only way to read it is to set it; put it back at once (at import,
    os.umask(mask)      # before any thread exists that could create a file meanwhile)
    return mask


_UMASK = _read_umask()


def write_temp(folder, prefix, write):
    """A new file `<folder>/<prefix>XXXX` holding what `write(binary file)` wrote, flushed to
    disk, with the permissions open() would give; its path. Nothing is left behind when `write`
    or the disk fails (the error propagates)."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=folder)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        return tmp
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text_atomic(path, text):
    """Replace the text file `path` through a temp file + rename; OutputError when it cannot be
    written."""
    with writing(path):
        tmp = write_temp(os.path.dirname(os.path.abspath(path)), ".tmp_" + os.path.basename(path),
                         lambda f: f.write(text.encode()))
        os.replace(tmp, path)


def read_json_object(path):
    """The JSON object (a dict) stored at `path`, or None when the file is missing, unreadable or
    holds anything else: the small records beside runs and caches are written whole
    (write_text_atomic), so an unreadable one is treated as absent."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def unwritable_folder(path):
    """Why files cannot be written into the folder `path` (created when missing), or None: a
    file stands where a folder must be, or the nearest existing folder is read-only."""
    probe = os.path.abspath(path)
    while not os.path.lexists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        return f"{probe} is a file, not a folder"
    if os.access(probe, os.W_OK | os.X_OK):
        return None
    try:
        read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return f"{probe} is on a read-only file system" if read_only else f"{probe} is not writable (permission denied)"


@contextlib.contextmanager
def writing_into(folder, flag):
    """`writing` for outputs that a command-line flag places (tables, figures): a failed write
    into `folder` is one OutputError line whose way out is that flag."""
    try:
        yield
    except OSError as err:
        reason = _write_failure_reason(err.filename or folder, err)
        raise OutputError(f"cannot write into {folder}: {reason}; pass {flag} a writable folder") from None
