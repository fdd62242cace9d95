# `make demo` and `make test` work on a fresh machine: both install the project first.
PYTHON ?= python3
# This image carries these torch/torchvision builds on local disk; any torch >= 2.5 works.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
STAMP := .install-stamp

.PHONY: install demo test test-all clean-install

$(STAMP): setup.py
	$(PYTHON) -c "import torch, torchvision" 2>/dev/null || $(PYTHON) -m pip install $(TORCH_PINS)
	$(PYTHON) -m pip install -e ".[test,demo,plot,timm]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PYTHON) tools/demo.py

test: install
	$(PYTHON) -m pytest -q

test-all: install
	$(PYTHON) -m pytest -q -m ""

clean-install:
	rm -f $(STAMP)
