"""Reading back what wandb's offline mode wrote: the run's transaction log
(`<WANDB_DIR>/wandb/offline-run-*/run-<id>.wandb`), which `wandb sync` uploads later.

The file is a 7-byte header (":W&B", magic, version) and then LevelDB-style log blocks of
32 KiB; each chunk is CRC32 (4 bytes), length (2), type (1: full, 2: first, 3: middle,
4: last) and its bytes; a record (wandb's protobuf `Record`) is one full chunk or first..last.
wandb ships no Python reader for it (its core, in Go, writes it), and wandb.Api is online only.
"""
import glob
import json
import os
import struct
import time

BLOCK = 32768
HEADER = 7


def records(path):
    """wandb_internal_pb2.Record objects of one .wandb file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B", f"{path} is not a wandb transaction log"
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < HEADER:  # a block's tail too short for a chunk header is padding
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0 and length == 0:
            break
        pending += data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


class OfflineRun:
    """What one offline run directory holds: id, project, name, tags, group, config, history
    (a list of {key: value} per wandb.log call) and the final summary."""

    def __init__(self, path):
        self.history, self.summary, self.config, self.finished = [], {}, {}, False
        for record in records(path):
            kind = record.WhichOneof("record_type")
            self.finished = self.finished or kind == "exit"
            if kind == "run":
                run = record.run
                self.id, self.project, self.name = run.run_id, run.project, run.display_name
                self.tags, self.group = list(run.tags), run.run_group
                self.config.update({u.key: json.loads(u.value_json) for u in run.config.update})
            elif kind == "history":
                self.history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                     for i in record.history.item})
            elif kind == "summary":
                for u in record.summary.update:
                    self.summary[u.key or "/".join(u.nested_key)] = json.loads(u.value_json)


def offline_runs(wandb_dir, wait_s=30):
    """OfflineRun of each offline-run-* under `wandb_dir`, oldest first. wandb's core process
    may still be writing a log after `run.finish()` returned: wait (up to `wait_s`) until every
    log is finished (holds its exit record)."""
    deadline = time.monotonic() + wait_s
    while True:
        paths = sorted(glob.glob(os.path.join(wandb_dir, "wandb", "offline-run-*", "run-*.wandb")))
        runs = [OfflineRun(p) for p in paths]
        if all(r.finished for r in runs) or time.monotonic() > deadline:
            return runs
        time.sleep(0.1)
