"""hexgen2 launcher: turn a plan.yaml into prefill/decode vLLM replicas on Ray behind a KV-aware router.

Sits just above planner.cli: it may import any planner package but cli, and planner.cli imports its pure
modules (the vLLM argv, the Kubernetes manifests of `hexplan export --to k8s`; tests/test_architecture.py
checks). Ray, aiohttp and vLLM are imported lazily inside the functions that need them so `hexlaunch
--help` and `--dry-run` start fast and need neither.
"""
