# battery-ct: `make test` (everything the README promises) and `make lint`.
# Pip uses whatever index pip is configured for; nothing here names a host.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint demo install kafka-jars settings-table clean-infra

test: install kafka-jars
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check --no-cache .  # the cache misses import-order changes when other modules appear
	$(BIN)/ruff format --check .
	$(BIN)/mypy

install: $(STAMP)

# Reinstall only when the dependencies change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The Kafka broker's jars (Maven, from local_stack/broker/pom.xml) into ~/.cache/battery-ct/kafka-libs:
# mvn -q -f local_stack/broker/pom.xml dependency:copy-dependencies, cached per content of the pom.
kafka-jars: install
	$(BIN)/python -m local_stack.jars

# The README's settings table from schemas/settings.py (a repository tool, not installed).
settings-table: install
	$(BIN)/python -m tools.settings_table --write

# Stop a broker and S3 server left by `battery-ct infra up` (the default state directory).
clean-infra: install
	$(BIN)/battery-ct infra down

# The main job end to end (README "Demo"): venv, install, Kafka jars, then `battery-ct demo`.
# Options go in DEMO_ARGS, e.g. make demo DEMO_ARGS="--scans 300 --keep-infra".
demo: install kafka-jars
	$(BIN)/battery-ct demo $(DEMO_ARGS)
