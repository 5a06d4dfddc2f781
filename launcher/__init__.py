"""hexgen2 launcher: turn a plan.yaml into prefill/decode vLLM replicas on Ray behind a KV-aware router.

Sits just above planner.cli: it may import any planner package but cli, and planner.cli imports its pure
modules (the vLLM argv, the Kubernetes manifests of `hexplan export --to k8s`; tests/test_architecture.py
checks). Ray is imported inside the functions that need it, and aiohttp only by the router's own modules
(router, relay), which only the `router` command loads, so `hexlaunch --help` and `--dry-run` start fast
and need neither.
"""
