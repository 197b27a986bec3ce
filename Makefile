# dlrmamba: the two commands a user needs are `make demo` and `make test`.
# Both install what they need first (idempotently: a second run skips the install).

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install.stamp
# Anything that changes what gets installed (including data files copied into share/).
# (launch/, config/ and models/ are linked into the venv's share dir, so edits need no install.)
INSTALL_DEPS := setup.py setup.cfg package.xml tools/install.sh tools/build_vision_msgs.py \
	tools/install_share.py $(wildcard tools/vision_msgs/*.* tools/vision_msgs/msg/*.msg)
PYTEST_ARGS ?=

.PHONY: help install test test-fast lint typecheck demo bench clean

help:
	@echo "make install   create $(VENV) and install everything (torch, ROS 2 wheels, vision_msgs)"
	@echo "make demo      run the detector node on a synthetic rosbag with the shipped model"
	@echo "make test      install if needed, then ruff + mypy + pytest (slow/gpu tests skip cleanly)"
	@echo "make lint      ruff;   make typecheck  mypy;   make bench  CPU benchmarks -> docs/"

install: $(STAMP)

$(STAMP): $(INSTALL_DEPS)
	@bash tools/install.sh
	@touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check .

# Checked at zero errors by `make test` (see pyproject.toml [tool.mypy]); the whole tree:
# `make typecheck MYPY_PATHS="dlrmamba_core dlrmamba_ros"`.
MYPY_PATHS ?= dlrmamba_core/runtime dlrmamba_core/deploy dlrmamba_core/research dlrmamba_core/losses \
	dlrmamba_ros

typecheck: install
	$(VENV)/bin/mypy --follow-imports=silent $(MYPY_PATHS)

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --follow-imports=silent $(MYPY_PATHS)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install
	$(PY) -m dlrmamba_core.demo

bench: install
	$(PY) -m dlrmamba_core.cli bench

clean:
	rm -rf $(VENV) build install log .pytest_cache .ruff_cache .mypy_cache
