# Two entry points (see README): `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# On machines without CUDA, pin the CPU build of torch (a bare `torch` pulls a multi-GB CUDA build).
CONSTRAINTS := $(shell command -v nvidia-smi >/dev/null 2>&1 || echo "-c constraints-cpu.txt")

.PHONY: setup demo test test-all bench clean

setup: $(VENV)/.installed

# pip compiles bytecode on one core; compileall uses them all (test folders left out: nothing imports them).
$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-compile $(CONSTRAINTS) -e '.[test]'
	$(BIN)/python -m compileall -q -j 0 -x '/tests?/|/torch/testing/_internal/' $(VENV)/lib > /dev/null || true  # a file this Python cannot parse just stays uncompiled
	touch $@

demo: setup
	$(BIN)/distlaw demo

# One test process per core (pytest-xdist): most tests use one core (threads are pinned).
PYTEST := $(BIN)/python -m pytest -q -n $(shell nproc 2>/dev/null || echo 2) --dist loadgroup

# Locally `make test` leaves out the tests marked slow; under CI=true (.ci/run) it runs them all.
SLOW := $(if $(filter true 1 yes,$(CI)),,-m "not slow")

test: setup
	$(PYTEST) $(SLOW)

test-all: setup
	$(PYTEST)

bench: setup
	for f in $(filter-out benchmarks/cores.py,$(wildcard benchmarks/*.py)); do $(BIN)/python $$f; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
