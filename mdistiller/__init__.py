"""mdistiller: knowledge distillation for image classifiers, built around Swapped Logit Distillation.

Layers, lowest first; a module imports only from its own layer or lower ones, never in a circle
(tests/test_layers.py checks every import, function-level ones included):

  errors, config, plugins      user-facing errors; the one config tree; importing PLUGINS modules
  runtime/                     checkpoint files, safe writes, device choice (used by all above it)
  models/, data/, distillers/  the zoo, datasets and loaders, the methods (what each needs: inputs.py)
  engine/                      the step (engine/step.py) and the loop (trainer.py), checkpoints, logs
                               and their file formats, launch
  benchmark/, analysis/        tables and figures over run folders
  dataset/                     mdistiller's `get_dataset` for its scripts (adapters: engine/upstream.py)
  cli/                         the programs behind tools/*.py and the mdistiller-* console scripts
"""
__version__ = "0.1.0"
