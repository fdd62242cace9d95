"""The step, the loop, checkpoints, logs, launch (see engine/trainer.py and engine/build.py).

`from mdistiller.engine import trainer_dict` (mdistiller's trainers, for its scripts) is
engine/upstream.py's, imported on first use so that `mdistiller.engine.cfg` stays light.
"""


def __getattr__(name):
    if name == "trainer_dict":
        from .upstream import trainer_dict

        return trainer_dict
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
