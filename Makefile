# natchat's front door. Every target installs what it needs first, so a fresh Debian machine (as root)
# needs nothing but `make`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Debian packages the tests use: Mininet and its tools for the real-NAT tests (bridge-utils for
# --switch lxbr), and coturn's turnutils_stunclient as a third-party STUN client
MININET_PKGS := mininet bridge-utils iptables iproute2 iputils-ping tcpdump conntrack coturn
MININET_TOOLS := mn mnexec brctl iptables conntrack tcpdump ip ping turnutils_stunclient
DEBIAN_PYTHON := /usr/bin/python3

.PHONY: install mininet-deps demo demo-loopback test mininet-test grid fuzz bench lint check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { \
	  echo "installing python3-venv (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

## Debian packages for the Mininet and STUN tests, installed only when missing (needs root; skipped otherwise)
mininet-deps:
	@if [ "$$(id -u)" != 0 ]; then echo "mininet-deps: not root, not installing (the Mininet tests will be skipped)"; exit 0; fi; \
	missing=0; for tool in $(MININET_TOOLS); do command -v $$tool >/dev/null || missing=1; done; \
	$(DEBIAN_PYTHON) -c 'import mininet' 2>/dev/null || missing=1; \
	if [ $$missing = 1 ]; then \
	  echo "installing $(MININET_PKGS) (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(MININET_PKGS); \
	fi

## the main job: the assignment's scenario across two real Linux NATs in Mininet, with a transcript
demo: install mininet-deps
	@if [ "$$(id -u)" = 0 ]; then \
	  $(DEBIAN_PYTHON) topologies/seed_scenario.py --demo --pairs 5; \
	else \
	  echo "make demo: not root, so no Mininet; running the loopback demo instead"; \
	  $(BIN)/python scripts/demo_loopback.py; \
	fi

## a server and three clients on loopback (no root needed)
demo-loopback: install
	$(BIN)/python scripts/demo_loopback.py

## the whole test suite, real NATs included when root (pytest's "no tests collected", status 5, is no failure)
test: install mininet-deps
	$(BIN)/python -m pytest; status=$$?; [ $$status -eq 5 ] && status=0; exit $$status

## only the real-NAT proofs, each printing its table
mininet-test: install mininet-deps
	@[ "$$(id -u)" = 0 ] || { echo "make mininet-test needs root (network namespaces)"; exit 1; }
	$(DEBIAN_PYTHON) topologies/check_nat.py
	$(DEBIAN_PYTHON) topologies/seed_scenario.py --pairs 20
	$(DEBIAN_PYTHON) topologies/midpeer_scenario.py --markdown docs/MIDPEER_GRID.md
	$(BIN)/python -m pytest -q tests/mininet/test_probe.py tests/mininet/test_ipv6.py
	$(DEBIAN_PYTHON) topologies/reliability_scenario.py
	$(DEBIAN_PYTHON) topologies/nat_grid.py --pairs 2

## the NAT grid (issue 14): every ordered pair of the NAT zoo's kinds, 10 fresh pairs each; docs/NAT_GRID.md
grid: install mininet-deps
	@[ "$$(id -u)" = 0 ] || { echo "make grid needs root (network namespaces)"; exit 1; }
	$(DEBIAN_PYTHON) topologies/nat_grid.py --pairs 10 --markdown docs/NAT_GRID.md

## the long fuzz run: over 100,000 generated and mutated datagrams each into the decoder, the registry and the client
fuzz: install
	NATCHAT_FUZZ_EXAMPLES=1800 $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/test_fuzz.py

## the performance benchmark: a table, bench/results.json and bench/results.png; figure 6 needs root (Mininet)
bench: install mininet-deps
	@$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python bench/run.py

lint: install
	$(BIN)/ruff check natchat tests scripts topologies
	$(BIN)/ruff format --check natchat tests scripts topologies
	$(BIN)/mypy

check: lint test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
