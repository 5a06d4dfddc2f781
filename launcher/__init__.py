"""hexgen2 launcher: turn a plan.yaml into prefill/decode vLLM replicas on Ray behind a KV-aware router.

Imports only `planner.plan` from the planner; Ray, aiohttp and vLLM are imported lazily inside the
functions that need them so `hexlaunch --help` and `--dry-run` start fast and need neither.
"""
