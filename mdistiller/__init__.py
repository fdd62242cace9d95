"""mdistiller: knowledge distillation for image classifiers, built around Swapped Logit Distillation.

Layers, lowest first; a module imports only from its own layer or lower ones, never in a circle
(tests/test_layers.py checks every import, function-level ones included):

  errors, config               user-facing errors; the one config tree
  runtime/                     checkpoint files, safe writes, device choice (used by all above it)
  models/, data/, distillers/  the zoo, datasets and loaders, the methods (what each needs: inputs.py)
  engine/                      the step and the loop, checkpoints, logs and their file formats, launch
  benchmark/, analysis/        tables and figures over run folders
  tools/ (outside the package) thin command lines
"""
__version__ = "0.1.0"
