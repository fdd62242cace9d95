"""Real file systems for tests about writes that fail: a small or read-only tmpfs."""
import contextlib
import os
import subprocess

import pytest


@contextlib.contextmanager
def tmpfs(path, options):
    """A real small or read-only file system at `path` (needs root); skips the test otherwise."""
    os.makedirs(path, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                                           capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)
