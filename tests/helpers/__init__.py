"""Plain helpers shared by the test modules (no tests and no fixtures here: the shared fixtures
are in tests/conftest.py). Test modules import them by name, e.g. `from helpers.tiny import
tiny_trainer`; no test module imports from another test module (tests/test_hygiene.py).

- tiny: a tiny conv net, KD distiller, in-memory data and trainer (solo and paired), colour
  image folders, the environment for child processes;
- logits: a tiny linear net, configs and logits for the distiller and loss tests;
- data: data files written on the fly (images, class trees, fake CIFAR pickles), the shared
  folder, a subset of the real CIFAR-100;
- zoo_runs: configs and checks for short real-pipeline runs (zoo models, image folders);
- outputs: readers for a run's event file and worklog;
- tools: loading tools/*.py as modules and their common command line.
"""
