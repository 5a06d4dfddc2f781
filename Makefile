# The README's two commands: `make demo` and `make test`. Both install what they need into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_CLUSTER ?= examples/paper-hetero-1.yaml

.PHONY: install demo test lint bench test-vllm clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,launch]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@mkdir -p out
	$(BIN)/hexplan validate $(DEMO_CLUSTER)
	$(BIN)/hexplan solve $(DEMO_CLUSTER) -o out/plan.yaml
	$(BIN)/hexplan show out/plan.yaml

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check planner launcher tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/solve_scaling.py

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
