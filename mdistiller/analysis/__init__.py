"""Seeing inside a trained distillation (kept import-free: the plotting modules import matplotlib
only when called). The statistics logged during training live where they are produced:
distillers/swap_stats.py (SLD's swap statistics), engine/stat_sums.py (their epoch sums).

  comparison.py   teacher-vs-student numbers on a test set (accuracies, calibration, logit gaps)
  plots.py        the figures (matplotlib, Agg, no pyplot state), returned as Figure objects
  inference.py    run a student and a teacher over a test loader (logits, pooled features)
  markdown.py     analysis.md: the numbers behind the figures
  analyze.py      tools/analyze.py's pipeline: checkpoint -> PNGs + analysis.md
"""
