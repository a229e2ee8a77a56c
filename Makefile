# `make demo`: train and evaluate on the synthetic world. `make test`: the test suite.
# Both create .venv (Python 3.10+) and install the package, the teacher tool's
# PyTorch side, the test tools, the oneDNN CPU kernels and the web page's server into it
# on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/synthetic_demo

.PHONY: demo test test-fast install clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test,teachers,cpu,serve]'
	touch $@

demo: install
	$(PY) -m avkd_jax.main --config=configs/synthetic.py --workdir=$(WORKDIR)

test: install
	$(PY) -m pytest -q tests

test-fast: install
	$(PY) -m pytest -q -m "not slow" tests

clean:
	rm -rf $(VENV) runs data
