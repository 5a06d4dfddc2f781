"""The search: partition, roles, layouts, KV network, max-flow, scoring, refinement, re-planning."""
