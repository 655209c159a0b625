# Two commands set a fresh machine up:  `make quickstart`  and  `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: install quickstart lint docs test test-all bench gpu-check clean

$(BIN)/iclab: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first: the build pip finds for this platform (CPU on the development machines, CUDA on other Linux);
	# GPU users: make TORCH=... or install their own torch beforehand
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test,docs]"
	touch $@

install: $(BIN)/iclab

quickstart: install
	$(BIN)/iclab train configs/quickstart.yaml --out runs/quickstart --overwrite

lint: install
	$(BIN)/ruff check iclab tests benchmarks scripts
	$(BIN)/ruff format --check iclab tests benchmarks scripts

docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# bytecode caches on even where PYTHONDONTWRITEBYTECODE is set: without them every test process and every
# `python -m iclab` a test starts recompiles iclab and re-rewrites the tests' asserts (~2 s of CPU each);
# worksteal: a worker left with one long test hands the rest of its queue to the idle one
PYTEST := PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n 2 --dist worksteal

test: install lint docs
	$(PYTEST)

test-all: install
	$(PYTEST) -m ""

bench: install
	$(BIN)/iclab bench --quick --out runs/bench.json

# on a CUDA machine: CUDA tests, bench --mfu, 2-GPU NCCL quickstart, timed Garg slice -> benchmarks/results/gpu-check-*.json
# (GPU_CHECK_DRY=1 make gpu-check: the same steps on the CPU with tiny settings)
gpu-check: install
	PY=$(BIN)/python benchmarks/gpu_check.sh

clean:
	rm -rf $(VENV) runs .pytest_cache build/site
