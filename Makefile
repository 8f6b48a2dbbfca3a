# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
# The cuda13 extra installs CuPy even without a GPU, so the cuda import and error
# paths are exercised everywhere; the GPU tests skip with a reason where none is usable.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,cuda13]'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m gpuad train

test: $(VENV)/.installed
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) benchmarks/overhead.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis
