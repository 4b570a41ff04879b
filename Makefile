# Runbook Manager — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8080
# Extra arguments for pytest, e.g. `make test PYTEST_ARGS="-k engine -x"`.
PYTEST_ARGS ?=

.PHONY: run test bench clean

# Root installs packages itself; anyone else goes through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# One stamp per install flavour, refreshed when the package metadata changes.
$(VENV)/.installed-run: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	mkdir -p var
	$(BIN)/runbook-manager db upgrade
	$(BIN)/runbook-manager serve --demo --host $(HOST) --port $(PORT)

# The console's browser tests drive Debian's headless Chromium; install it when missing.
test: $(VENV)/.installed-test
	(command -v chromium && command -v chromedriver) >/dev/null 2>&1 || $(SUDO) apt-get install -y -q chromium chromium-driver || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium chromium-driver)
	$(BIN)/python -m pytest -n auto $(PYTEST_ARGS)

# Benchmarks (not part of `make test`): `make bench` (5 to 9 minutes), `make bench QUICK=1` (about 30 seconds);
# `make bench PG_BURST=1` also fires 10,000 schedules on one minute on PostgreSQL.
bench: $(VENV)/.installed-test
	command -v hey >/dev/null 2>&1 || $(SUDO) apt-get install -y -q hey || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q hey)
	$(BIN)/python -m bench.run $(if $(QUICK),--quick) $(if $(PG_BURST),--postgres-burst)

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache
