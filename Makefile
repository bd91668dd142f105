# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv with Python 3.11 when it is missing and installs the
# project with the versions pinned in constraints.txt.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench clean test-compat

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

# The supported qianfan line, proved: the core, wire and drop-in suites run against
# the oldest, a middle and the newest release, each in its own venv
# (.venv-compat-VERSION) with every other package as constraints.txt pins it.
# `make test-compat COMPAT_QIANFAN="0.4.8.1 0.4.12.3"` picks the releases.
COMPAT_QIANFAN ?= 0.4.8.1 0.4.10 0.4.12.3
COMPAT_SUITES  ?= tests/core tests/wire tests/dropin

.venv-compat-%/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv .venv-compat-$*
	grep -v -i '^qianfan==' constraints.txt > .venv-compat-$*/constraints.txt
	.venv-compat-$*/bin/python -m pip install --quiet --disable-pip-version-check \
		-c .venv-compat-$*/constraints.txt -e '.[test]' 'qianfan==$*'
	@touch $@

test-compat: $(foreach v,$(COMPAT_QIANFAN),.venv-compat-$(v)/.installed)
	@set -e; for v in $(COMPAT_QIANFAN); do \
		echo "== qianfan $$v: $(COMPAT_SUITES)"; \
		.venv-compat-$$v/bin/python -c "from importlib.metadata import version as v; \
			assert v('qianfan') == '$$v', v('qianfan')"; \
		.venv-compat-$$v/bin/python -m pytest -q -n auto --dist loadfile -p no:cacheprovider \
			$(COMPAT_SUITES); \
	done

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .venv-compat-* .pytest_cache .mypy_cache .ruff_cache .hypothesis
