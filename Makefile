# The two commands of the course: `make demo` and `make test`.
# Each creates .venv (python3 -m venv) when it is missing and installs minildm into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.minildm-installed

.PHONY: demo test test-unit test-notebooks lab browser-check exercises install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/minildm demo

test: test-unit test-notebooks

test-unit: $(STAMP)
	$(VENV)/bin/minildm course check
	MINILDM_FAST=1 $(PY) -m pytest -q tests

test-notebooks: $(STAMP)
	MINILDM_FAST=1 $(PY) -m pytest -q --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider notebooks solutions

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)"

# Maintainers: JupyterLab in the distribution's headless Chromium (apt install chromium); not part of `make test`.
browser-check: $(STAMP)
	$(PY) -c "import playwright" 2>/dev/null || $(PY) -m pip install playwright
	MINILDM_FAST=1 $(PY) benchmarks/browser_check.py

exercises: $(STAMP)
	$(VENV)/bin/minildm course build

clean:
	rm -rf outputs .pytest_cache
