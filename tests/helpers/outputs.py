"""Readers for a run's outputs: tensorboard scalars from an event file, the worklog's epoch blocks."""
import glob
import os
import re
import struct

from tensorboardX.proto import event_pb2


def read_scalars(folder):
    """{tag: [(step, value), ...]} from tensorboard event files (TFRecord framing)."""
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "events.*"))):
        data, pos = open(path, "rb").read(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


def worklog_blocks(path):
    """([(epoch, lr, {key: value string}), ...], the whole text) of a worklog.txt."""
    text = open(path).read()
    blocks = re.findall(r"-{25}\nepoch: (\d+)\nlr: (\S+)\n((?:\w+: \S+\n)+)-{25}\n", text)
    return [(int(e), float(lr), dict(line.split(": ") for line in body.splitlines())) for e, lr, body in blocks], text
