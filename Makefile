# `make demo` and `make test` work on a fresh machine: both install the project first.
#
# Where they install: when $(PYTHON) already runs inside a virtual environment or a conda env
# (one you activated, or PYTHON=/path/to/env/bin/python), into that env as it is. Otherwise into
# a project venv, $(VENV), made from $(PYTHON): Debian/Ubuntu's own python refuses pip installs
# (PEP 668, "externally-managed-environment"), and other system pythons should not get torch
# installed into them. The venv is made without --system-site-packages on purpose: a distribution's
# old numpy/pillow would then satisfy our requirements and be mixed with a current torch.
# NO_VENV=1 installs into $(PYTHON) itself instead.
PYTHON ?= python3
VENV ?= .venv
# What `make install` installs; the one place to add an extra.
EXTRAS ?= test,demo,plot,timm,upstream,wandb,tensorboard
# This image carries these torch/torchvision builds on local disk; elsewhere any torch >= 2.5 works.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
TORCH_ANY ?= "torch>=2.5" "torchvision>=0.20"
# TORCH_CPU=1 installs torch/torchvision from PyTorch's CPU-only wheel index: no CUDA libraries,
# a far smaller env on a machine without an NVIDIA GPU. Default: PyPI's build (with CUDA on Linux).
TORCH_CPU ?=
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_INDEX := $(if $(TORCH_CPU),--index-url $(TORCH_CPU_INDEX))
# The demo's student seeds: `make demo SEEDS="0 1 2"` adds each method's difference to KD with a
# 95% confidence interval (about 3x the time of one seed).
SEEDS ?= 0
# Holds the prefix of the env the project was installed into (a different env installs again).
STAMP ?= .install-stamp

# "KIND PREFIX" of the env $(PYTHON) runs in, KIND being conda, venv or none; empty if it won't run.
ENV_INFO := $(shell $(PYTHON) -c "import os, sys; \
	conda = os.path.isdir(os.path.join(sys.prefix, 'conda-meta')); \
	print('conda' if conda else 'venv' if sys.prefix != sys.base_prefix else 'none', sys.prefix)" 2>/dev/null)
ENV_KIND := $(firstword $(ENV_INFO))

ifeq ($(ENV_KIND)$(NO_VENV),none)
  PY := $(VENV)/bin/python
  ENV_PREFIX := $(abspath $(VENV))
  # bin/pip, not bin/python: a venv whose pip bootstrap failed has a python but no pip.
  ENV_DEP := $(VENV)/bin/pip
else
  PY := $(PYTHON)
  ENV_PREFIX := $(wordlist 2,$(words $(ENV_INFO)),$(ENV_INFO))
  ENV_DEP :=
endif

.PHONY: install demo test test-all clean-install
ifneq ($(shell cat $(STAMP) 2>/dev/null),$(ENV_PREFIX))
  .PHONY: $(STAMP)
endif

$(VENV)/bin/pip:
	@$(PYTHON) -c "import venv, ensurepip" 2>/dev/null || { echo "make: $(PYTHON) cannot create a virtual environment (no ensurepip module); install it (Debian/Ubuntu: apt install python3-venv), or activate your own venv or conda env and rerun" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): setup.py $(ENV_DEP)
	@test -n "$(ENV_KIND)" || { echo "make: PYTHON=$(PYTHON) does not run; pass PYTHON=/path/to/python3 (3.9 or newer)" >&2; exit 1; }
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install $(TORCH_INDEX) $(TORCH_PINS) \
		|| { echo "make: $(TORCH_PINS) not available here; installing any torch >= 2.5" >&2; \
		     $(PY) -m pip install $(TORCH_INDEX) $(TORCH_ANY); }
	$(PY) -m pip install -e ".[$(EXTRAS)]"
	echo "$(ENV_PREFIX)" > $(STAMP)

install: $(STAMP)

demo: install
	$(PY) tools/demo.py --seeds $(SEEDS)

test: install
	$(PY) -m pytest -q

test-all: install
	$(PY) -m pytest -q -m ""

clean-install:
	rm -f $(STAMP)
