# Two entry points, each doing its own set-up on a fresh machine:
#   make demo   -> .venv, install, Fashion-MNIST, a 3-minute `sslvit pretrain` (recipes/fmnist_demo), kNN top-1,
#                  TensorBoard path (DEMO_MIN=5 make demo: a longer budget)
#   make test   -> .venv, install, ruff (format + lint), the test suite (slow tests excluded; `make test-all` runs them)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sslvit-installed
# The exact versions the test suite passed with (every install uses them; `make lock` refreshes them).
LOCK := constraints.txt
FMNIST_DIR := /usr/share/datasets/fashion-mnist
DEMO_MIN ?= 3
DEMO_DIR ?= runs/demo
OTHER_PRECISION := $(shell grep -qs avx512_bf16 /proc/cpuinfo && echo fp32 || echo bf16)
PRECISION_TESTS := tests/engine tests/evaluation tests/methods tests/diagnostics

.PHONY: install data demo lint test test-all test-precision lock bench clean

install: $(STAMP)

# Reinstall only when the project's metadata or the lock changes (fast when already installed).
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(LOCK) torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -c $(LOCK) -e '.[dev]'
	@touch $@

# Refresh the lock: the newest releases pyproject.toml allows, in a scratch venv, written to $(LOCK).
# Then `make test` (it reinstalls .venv from the new lock) and commit $(LOCK) only if it is green.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q --upgrade pip
	.venv-lock/bin/python -m pip install -q -e '.[dev]'
	{ echo "# Exact versions the test suite passed with; used by every 'make install'. Refresh: make lock, then make test."; \
	  .venv-lock/bin/python -m pip freeze --exclude-editable; } > $(LOCK).new
	mv $(LOCK).new $(LOCK) && rm -rf .venv-lock
	@echo "wrote $(LOCK); now run 'make test' and commit $(LOCK) if it passes"

# Fashion-MNIST from Debian's package when missing (needs root + apt); otherwise sslvit falls back
# to --set data.data_dir=... or torchvision's download.
data:
	@if [ -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ]; then echo "Fashion-MNIST: $(FMNIST_DIR)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) \
	  || echo "warning: could not install dataset-fashion-mnist; sslvit will try its other sources"; \
	else echo "note: $(FMNIST_DIR) missing and apt unavailable; sslvit will try --data-dir / download"; fi

demo: install data
	$(VENV)/bin/sslvit pretrain --recipe fmnist_demo --output-dir $(DEMO_DIR) --overwrite --set train.time_budget_min=$(DEMO_MIN)

# ruff (pyproject.toml [tool.ruff]): formatting and lint first, then the tests
lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

test: install data lint
	set +e; $(PY) -m pytest -q -m "not slow"; rc=$$?; if [ $$rc = 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

test-all: install data
	$(PY) -m pytest -q

# The precision-sensitive tests as if train.precision=auto meant the other precision than on this machine
# (bf16 where the CPU lacks it, fp32 where it has it), so every machine proves both resolutions of auto.
test-precision: install data
	$(PY) -m pytest -q -m "not slow" --auto-precision=$(OTHER_PRECISION) $(PRECISION_TESTS)

clean:
	rm -rf $(VENV) runs .pytest_cache
