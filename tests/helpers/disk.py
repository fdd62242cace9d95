"""A real full disk for tests: a small tmpfs mounted in a temp folder (needs root)."""
import contextlib
import os
import shutil
import subprocess


@contextlib.contextmanager
def small_disk(folder, size="4m"):
    """Mounts a tmpfs of `size` on `folder` and yields it, or yields None where it cannot (not
    root, no mount); unmounted afterwards."""
    os.makedirs(folder, exist_ok=True)
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True).returncode == 0
    try:
        yield folder if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder, leave_bytes=0):
    """Fill the file system of `folder` up to `leave_bytes` free (a file named `filler`)."""
    free = shutil.disk_usage(folder).free - leave_bytes
    with open(os.path.join(folder, "filler"), "wb") as f:
        f.write(b"\0" * max(free, 0))
