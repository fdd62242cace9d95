"""Seeing inside a distillation (kept import-free: the trainer and the distillers import single
modules from here, the plotting ones import matplotlib only when called).

  swap_stats.py   SLD's swap statistics as pure tensor functions (rates, target ranks, class errors)
  stat_sums.py    the distillers' statistics side channel and its device-side epoch sums
  metrics.py      teacher-vs-student numbers on a test set (accuracies, calibration, logit gaps)
  plots.py        the figures (matplotlib, Agg, no pyplot state), returned as Figure objects
  collect.py      run a student and a teacher over a test loader (logits, pooled features)
  analyze.py      tools/analyze.py's pipeline: checkpoint -> PNGs + analysis.md
"""
