# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv with Python 3.11 when it is missing and installs the
# project with the versions pinned in constraints.txt.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/evalctl demo

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check evalctl tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy --strict evalctl

# One worker per core; a test file stays on one worker (module fixtures, and
# the real-time rate tests are not split across competing processes).
pytest: $(STAMP)
	$(BIN)/pytest -q -n auto --dist loadfile

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
