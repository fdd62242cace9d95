"""The leaf every layer above `config` may use (it imports only `errors`):

  checkpoint_io.py   reading and writing checkpoint files (.pth allow-listed, .safetensors), atomically
  safe_write.py      failed writes as one-line errors; atomic text files
  devices.py         the DEVICE key -> torch.device, and the layout a device prefers
  digest.py          sha256 content digests of files and of state dicts

The engine re-exports the checkpoint functions as `mdistiller.engine.checkpoint` and the device
ones from `mdistiller.engine.device`.
"""
