# natchat's front door. Every target installs what it needs first, so a fresh Debian machine (as root)
# needs nothing but `make`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo demo-loopback test lint check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { \
	  echo "installing python3-venv (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

## the main job: a server and three clients register, list, chat and leave, with a transcript
demo: demo-loopback

demo-loopback: install
	$(BIN)/python scripts/demo_loopback.py

## the whole test suite (pytest's "no tests collected", status 5, is not a failure)
test: install
	$(BIN)/python -m pytest; status=$$?; [ $$status -eq 5 ] && status=0; exit $$status

lint: install
	$(BIN)/ruff check natchat tests scripts
	$(BIN)/ruff format --check natchat tests scripts
	$(BIN)/mypy

check: lint test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
