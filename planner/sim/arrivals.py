"""Request streams: Poisson arrivals with lengths from the cluster's workload, or a replayed trace."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.inputs.workload import Trace, Workload


@dataclass(frozen=True, eq=False)
class Arrivals:
    """Arrival times (s, ascending) with each request's prompt and output length in tokens."""

    time: np.ndarray
    prompt: np.ndarray
    output: np.ndarray

    def __len__(self) -> int:
        return len(self.time)


def poisson(workload: Workload, rate: float, duration: float, rng: np.random.Generator) -> Arrivals:
    """A Poisson process of `rate` req/s over [0, duration): N ~ Poisson(rate·T), times uniform given N."""
    n = int(rng.poisson(rate * duration))
    times = np.sort(rng.uniform(0.0, duration, n))
    return Arrivals(times, workload.prompt.sample(rng, n), workload.output.sample(rng, n))


def replay(trace: Trace, speedup: float = 1.0, duration: float | None = None) -> Arrivals:
    """The trace's own arrivals, time compressed by `speedup`, cut at `duration` seconds if given."""
    times = trace.arrival_s / speedup
    keep = slice(None) if duration is None else slice(0, int(np.searchsorted(times, duration, side="left")))
    return Arrivals(times[keep], trace.prompt[keep], trace.output[keep])
