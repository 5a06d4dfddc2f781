"""Orchestration of the HexGen-2 scheduler: partition → roles → layouts → max-flow → refinement."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from planner.plan import Connector, Plan
from planner.topology import Cluster

Progress = Callable[[float, float], None]  # (fraction of time budget used, best throughput so far)


def solve(
    cluster: Cluster,
    *,
    seed: int = 0,
    time_limit: float = 30.0,
    connector: Connector = "nixl",
    objective: str | None = None,
    baseline: Plan | None = None,
    max_moved_gpus: int | None = None,
    progress: Progress | None = None,
) -> Plan:
    """Best plan found for `cluster` (being written: the lead is implementing this now)."""
    raise NotImplementedError(Path(__file__).name)
