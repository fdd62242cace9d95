"""mdistiller: knowledge distillation for image classifiers, built around Swapped Logit Distillation."""
__version__ = "0.1.0"
