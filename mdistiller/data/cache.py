"""Cache of decoded images: uint8 arrays saved once, reloaded instantly while the folder is unchanged.

A cache file is an uncompressed .npz holding the arrays plus `key`, a fingerprint of the source
folder (relative path, size and mtime of every file, like make): adding, removing, replacing or
touching an image invalidates it. Corruption is caught by the zip format itself: np.load checks
each member's CRC-32 as it reads it and raises BadZipFile on a mismatch, and a truncated file
fails to open. Anything that does not load cleanly with the right key is rebuilt, never trusted.

Where: DATASET.CACHE_DIR when set, else the user's cache folder ($XDG_CACHE_HOME/mdistiller, else
~/.cache/mdistiller), never the dataset folder itself (shared datasets are often read-only). The
file name carries a hash of the dataset's absolute path, so two datasets never share a cache.
"""
import hashlib
import logging
import os
import tempfile
import zipfile

import numpy as np

log = logging.getLogger(__name__)

FORMAT = "mdistiller-image-cache-2"  # change when the cached layout changes


def folder_fingerprint(root, paths):
    """Fingerprint of the files `paths` (all under `root`); independent of where `root` lives."""
    h = hashlib.sha256(FORMAT.encode())
    prefix = len(os.path.join(root, ""))  # paths are root + separator + relative part
    for path in paths:
        st = os.stat(path)
        h.update(f"{path[prefix:]}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def default_cache_dir():
    """$XDG_CACHE_HOME/mdistiller (an absolute XDG_CACHE_HOME only, as the XDG spec says), else
    ~/.cache/mdistiller."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mdistiller")


def cache_path(data_dir, cache_dir, name):
    """`<cache_dir or default_cache_dir()>/<name>-<hash of the data's path>.npz`."""
    tag = hashlib.sha256(os.path.abspath(data_dir).encode()).hexdigest()[:12]
    return os.path.join(cache_dir or default_cache_dir(), f"{name}-{tag}.npz")


def load_cache(path, key):
    """The cached arrays if `path` holds a complete cache for `key`, else None (and why, logged)."""
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        cached_key = str(arrays.pop("key"))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        log.warning("image cache %s is corrupt or unreadable (%s: %s); rebuilding it", path, type(err).__name__, err)
        return None
    if cached_key != key:
        log.info("image cache %s is stale (the image folder changed); rebuilding it", path)
        return None
    return arrays


def save_cache(path, key, arrays):
    """Write atomically (temp file + rename), so a crash never leaves a half-written cache.
    A folder that cannot be written only costs the speed-up: warn and go on."""
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, key=np.array(key), **arrays)
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; a cache is as shareable as the data
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as err:
        log.warning("cannot write image cache %s (%s); set DATASET.CACHE_DIR to a writable folder "
                    "to start faster next time", path, err)
        return False
    return True
