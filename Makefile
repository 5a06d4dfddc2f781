# The README's two commands: `make demo` and `make test`. Both install what they need into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_CLUSTER ?= examples/paper-hetero-1.yaml

.PHONY: install demo test lint bench fuzz test-vllm mutate clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,launch]'
	# torch==2.13.0: the CPU build (a local wheel on the project's machines; ~50 s, ~750 MB), so `hexplan
	# profile` runs for real on the CPU in the tests; the `profile` extra accepts any torch >= 2.4
	$(BIN)/python -m pip install --quiet 'torch==2.13.0'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@mkdir -p out
	$(BIN)/hexplan validate $(DEMO_CLUSTER)
	$(BIN)/hexplan solve $(DEMO_CLUSTER) -o out/plan.yaml
	$(BIN)/hexplan draw out/plan.yaml -o out/plan.svg
	$(BIN)/hexplan simulate out/plan.yaml --duration 300

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# The fuzzer (tests/fuzz/): FUZZ_INPUTS mutated clusters, plans, traces, configs and options through every command;
# prints crashes, hangs, wrong exit codes, overwritten outputs, unnamed messages; reproducers under out/fuzz/.
FUZZ_INPUTS ?= 10000
FUZZ_SEED ?= 0
fuzz: $(STAMP)
	$(BIN)/python -m tests.fuzz --inputs $(FUZZ_INPUTS) --seed $(FUZZ_SEED) --out out/fuzz

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check planner launcher tests benchmarks

# Contract with real vLLM (not part of `make test`; ~5 min and ~6 GB the first time, no GPU needed): solve every
# example, dry-run it for each KV connector, export it to Kubernetes and to `vllm bench serve`, and feed every
# engine argv (dry runs and manifests) and every bench command to vLLM's own parsers (tests/vllm_contract.py).
# A plan the launcher refuses still yields its JSON; the contract script then reports its problems as failures.
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
CONTRACT := out/vllm-contract

$(VLLM_STAMP):
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet 'vllm==0.33.0'
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

test-vllm: $(STAMP) $(VLLM_STAMP)
	@mkdir -p $(CONTRACT)
	@set -e; for cluster in $$(ls examples/*.yaml | grep -v /offers-); do \
		name=$$(basename $$cluster .yaml); \
		$(BIN)/hexplan solve $$cluster -o $(CONTRACT)/$$name.plan.yaml --time-limit 30 > /dev/null; \
		for connector in nixl mooncake lmcache; do \
			$(BIN)/hexlaunch $(CONTRACT)/$$name.plan.yaml --dry-run --format json --connector $$connector \
				--state-dir $(CONTRACT)/state 2> /dev/null > $(CONTRACT)/$$name.$$connector.json \
				|| true; \
		done; \
		$(BIN)/hexplan export $(CONTRACT)/$$name.plan.yaml --to k8s -o $(CONTRACT)/$$name.k8s.yaml > /dev/null \
			2>&1 || true; \
		$(BIN)/hexplan export $(CONTRACT)/$$name.plan.yaml --to vllm-bench -o $(CONTRACT)/$$name.bench.sh > /dev/null; \
	done
	VLLM_TARGET_DEVICE=cpu $(VLLM_VENV)/bin/python tests/vllm_contract.py $(CONTRACT)/*.json \
		$(CONTRACT)/*.k8s.yaml $(CONTRACT)/*.bench.sh

# Mutation testing of planner/costs, planner/scheduler, planner/sim and the router (scripts/mutate.py): a seeded
# sample of MUTANTS mutants (0: all ~5000), each run against the tests that execute its line, JOBS at a time.
# Golden-plan, Ray and architecture tests are left out; the golden-plan tests then run on the survivors alone, for
# a second rate. Kill rates and survivors print at the end. MINUTES=N: stop starting mutants after N minutes (those
# tested are a uniform sub-sample).
MUTANTS ?= 300
SEED ?= 0
JOBS ?= 2

mutate: $(STAMP)
	$(BIN)/python scripts/mutate.py --mutants $(MUTANTS) --seed $(SEED) --jobs $(JOBS) --golden $(if $(MINUTES),--minutes $(MINUTES))

bench: $(STAMP)
	$(BIN)/python benchmarks/costmodel_fidelity.py
	$(BIN)/python benchmarks/solve_scaling.py
	$(BIN)/python benchmarks/optimality.py
	$(BIN)/python benchmarks/ablation.py
	$(BIN)/python benchmarks/sim_speed.py
	$(BIN)/python benchmarks/fidelity.py
	$(BIN)/python benchmarks/paper.py
	$(BIN)/python benchmarks/paper_terms.py
	$(BIN)/python benchmarks/promise.py
	$(BIN)/python benchmarks/router_failover.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) out .pytest_cache .ruff_cache
