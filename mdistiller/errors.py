"""Errors a user can fix.

Every problem caused by input (a config key, a path, a checkpoint, a dataset folder, a value
out of range) is raised as a `UserError` subclass whose message is one line that names the
thing and says how to fix it. The CLIs print that line (no traceback) and exit with code 2.
"""


class UserError(Exception):
    """Base class: bad input that the user can correct. `str(err)` is the whole message."""


class ConfigError(UserError, ValueError):
    """A config key, type or value is wrong."""


class CheckpointError(UserError):
    """A checkpoint file is missing, unreadable or unsafe."""


class UnreadableCheckpoint(CheckpointError):
    """A checkpoint file is missing, empty, truncated, foreign or unsafe to load."""


class DataError(UserError):
    """A dataset folder is missing or malformed."""


class OutputError(UserError):
    """An output file or folder cannot be written (full disk, read-only folder, no permission)."""


class NonFiniteLossError(UserError):
    """The loss became NaN/inf; the run stopped before writing a checkpoint of bad weights."""


class MissingDependency(UserError, ModuleNotFoundError):
    """A distiller file imports a package this installation lacks (distillers/drop_in.py)."""


class DownloadError(UserError):
    """A file could not be downloaded (network down, server error, a transfer cut short)."""


class ArchiveError(UserError):
    """An archive is unreadable or holds something it must not (paths outside its folder,
    links, devices, unsafe or unfitting checkpoints); nothing of it was extracted."""
