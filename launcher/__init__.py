"""hexgen2 launcher: turn a plan.yaml into prefill/decode vLLM replicas on Ray behind a KV-aware router.

Imports from the planner only what it shares with it (plans.schema, scheduler.launchability,
sim.routing, types, errors, yamlio: tests/test_architecture.py checks); Ray, aiohttp and vLLM are
imported lazily inside the functions that need them so `hexlaunch --help` and `--dry-run` start fast
and need neither.
"""
