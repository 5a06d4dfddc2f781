"""hexgen2 launcher: turn a plan.yaml into prefill/decode vLLM replicas on Ray behind a KV-aware router.

Imports from the planner only what it shares with it (plans.schema, plans.diff, inputs.catalog,
scheduler.launchability, sim.routing, types, errors, yamlio: tests/test_architecture.py checks). Ray is
imported inside the functions that need it, and aiohttp only by the router's own modules (router, relay),
which only the `router` command loads, so `hexlaunch --help` and `--dry-run` start fast and need neither.
"""
