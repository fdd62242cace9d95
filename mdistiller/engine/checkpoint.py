"""The engine's name for checkpoint files: reading and writing live in the leaf
`mdistiller.runtime.checkpoint_io` (the model zoo loads teacher weights with them too); this
module keeps `mdistiller.engine.checkpoint.<name>` working for the code that imports it here."""
from ..runtime.checkpoint_io import (extract_state_dict, extract_student_state_dict, load_checkpoint,
                                     load_safetensors, load_weights, save_atomic)

__all__ = ["extract_state_dict", "extract_student_state_dict", "load_checkpoint", "load_safetensors", "load_weights",
           "save_atomic"]
