"""A run's tensorboard scalars (`train.events/events.out.tfevents.*`): written by `EventLog`
(tensorboardX), read back by `read_scalars`.

The trainer logs the per-epoch training throughput (`throughput`, images/s) there and nowhere
else; mdistiller's folders carry their test accuracies there too. Event files are TFRecord
streams (u64 length, u32 crc, payload, u32 crc) of `Event` protos; tensorboardX (already a
dependency) ships the proto classes, so no tensorboard install is needed to read them. CRCs are
not checked: a torn last record just ends the stream.
"""
import glob
import os
import struct

HEADER = struct.Struct("<QI")


def _records(path):
    with open(path, "rb") as f:
        while True:
            head = f.read(HEADER.size)
            if len(head) < HEADER.size:
                return
            length, _ = HEADER.unpack(head)
            payload = f.read(length)
            if len(payload) < length or len(f.read(4)) < 4:
                return
            yield payload


def read_scalars(folder):
    """{tag: [(step, value), ...]} over every event file in `folder` (empty if none or unreadable)."""
    from google.protobuf.message import DecodeError
    from tensorboardX.proto.event_pb2 import Event

    scalars = {}
    for path in sorted(glob.glob(os.path.join(glob.escape(folder), "events.out.tfevents.*"))):
        try:
            for payload in _records(path):
                event = Event.FromString(payload)
                for value in event.summary.value:
                    if value.HasField("simple_value"):
                        scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
        except (OSError, DecodeError):
            continue  # a damaged file only loses its own (remaining) scalars
    return scalars


class EventLog:
    """Tensorboard scalars in `<run>/train.events` (a folder, as in mdistiller)."""

    def __init__(self, folder):
        from tensorboardX import SummaryWriter  # only when writing: readers stay light

        self.writer = SummaryWriter(folder)

    def scalars(self, values, step):
        for name, value in values.items():
            self.writer.add_scalar(name, float(value), step)

    def flush(self):
        self.writer.flush()

    def close(self):
        self.writer.close()
