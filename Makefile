# Set-up is part of every target: a fresh clone needs only `make demo`, `make test`
# or `make bench`. The cuda13 extra installs CuPy even without a GPU, so the cuda
# import and error paths are exercised everywhere; the GPU tests skip with a reason
# where none is usable. The bench extra installs the peers (PyTorch, JAX, TensorFlow,
# autograd; CPU builds) that `make bench` compares against and the tests check.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,cuda13]'
	touch $@

# the peers, only for the targets that compare against them (the demo starts sooner)
$(VENV)/.peers: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m gpuad train

test: $(VENV)/.peers
	$(PY) -m pytest -q

bench: $(VENV)/.peers
	$(PY) -m gpuad bench --out benchmarks/results

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis
