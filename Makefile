# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv when missing and
# installs refnet (editable) with the extras it needs; a stamp file re-runs the install when
# setup.cfg changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test test-cpu test-cuda-sim test-cuda-sim-only test-cuda-compile bench bench-deps gpu-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.stamp-demo: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[plot]'
	touch $@

$(VENV)/.stamp-test: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,plot,mpi]'
	touch $@

demo: $(VENV)/.stamp-demo
	$(BIN)/refnet demo

# Three pytest processes side by side (the two cores share them; each one's output appears when it
# ends): the CPU tests; the CUDA kernels under Numba's CUDA simulator, which must be switched on
# before numba is first imported; and the CUDA kernels compiled for sm_90 (NVVM, ptxas, nvdisasm),
# which the simulator cannot do. `make test-cuda-sim` alone still runs the compile checks, in a
# child process.
test: $(VENV)/.stamp-test
	@echo "make test: CPU tests, simulated CUDA tests and CUDA compile checks run side by side;"
	@echo "           each part's output appears when it ends (about 8 minutes in all on 2 cores)."
	@$(MAKE) --no-print-directory -j3 --output-sync=target test-cpu test-cuda-sim-only test-cuda-compile

test-cpu: $(VENV)/.stamp-test
	$(BIN)/python -m pytest tests --ignore=tests/cuda $(PYTEST_ARGS)

test-cuda-sim: $(VENV)/.stamp-test
	NUMBA_ENABLE_CUDASIM=1 $(BIN)/python -m pytest tests/cuda $(PYTEST_ARGS)

test-cuda-sim-only: $(VENV)/.stamp-test
	NUMBA_ENABLE_CUDASIM=1 $(BIN)/python -m pytest tests/cuda -m "not compile_only" $(PYTEST_ARGS)

test-cuda-compile: $(VENV)/.stamp-test
	$(BIN)/python -m pytest tests/cuda -m compile_only $(PYTEST_ARGS)

bench-deps: $(VENV)/.stamp-test
	$(BIN)/python -m pip install --quiet torch==2.13.0

bench: $(VENV)/.stamp-test
	$(BIN)/refnet bench --device cpu

# On a GPU machine with no network whose python3 already has numba, numba-cuda, torch, h5py, pillow,
# tqdm, compute-sanitizer and ncu (the lent ones): installs nothing, runs refnet from this tree,
# under 8 minutes; results under bench/results/gpu-<date> (or $$OUT).
gpu-check:
	bash bench/gpu_check.sh

clean:
	rm -rf $(VENV) demo_out .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
