# Two entry points, each doing its own set-up on a fresh machine:
#   make demo   -> .venv, install, Fashion-MNIST, a short `sslvit pretrain`, kNN top-1, TensorBoard path
#   make test   -> .venv, install, the test suite (slow tests excluded; `make test-all` runs them)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sslvit-installed
FMNIST_DIR := /usr/share/datasets/fashion-mnist
DEMO_STEPS ?= 600
DEMO_DIR ?= runs/demo

.PHONY: install data demo test test-all bench clean

install: $(STAMP)

# Reinstall only when the project's metadata changes (fast when already installed).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# Fashion-MNIST from Debian's package when missing (needs root + apt); otherwise sslvit falls back
# to --set data.data_dir=... or torchvision's download.
data:
	@if [ -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ]; then echo "Fashion-MNIST: $(FMNIST_DIR)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) \
	  || echo "warning: could not install dataset-fashion-mnist; sslvit will try its other sources"; \
	else echo "note: $(FMNIST_DIR) missing and apt unavailable; sslvit will try --data-dir / download"; fi

demo: install data
	$(VENV)/bin/sslvit pretrain --recipe fmnist_vit_tiny --output-dir $(DEMO_DIR) --set train.max_steps=$(DEMO_STEPS)

test: install data
	set +e; $(PY) -m pytest -q -m "not slow"; rc=$$?; if [ $$rc = 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

test-all: install data
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
