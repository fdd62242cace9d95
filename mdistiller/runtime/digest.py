"""Content digests (sha256) that identify weights by what they hold, not by where they are."""
import hashlib

import torch

CHUNK_BYTES = 1 << 20


def file_sha256(path):
    """The sha256 hex digest of a file's bytes (read in 1 MiB pieces)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(piece)
    return digest.hexdigest()


def state_dict_sha256(state_dict):
    """The sha256 hex digest of a state dict's content: every entry's name, dtype, shape and
    bytes, in key order. Two modules get the same digest exactly when their weights are equal
    bit for bit, whatever file (or download) they were loaded from."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()

