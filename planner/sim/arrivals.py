"""Request streams: Poisson arrivals with lengths from the cluster's workload, or a replayed trace."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.errors import InputError
from planner.inputs.workload import Trace, Workload

# Requests one run may simulate (each costs ~1 KB and tens of µs): 2 M is minutes, not gigabytes.
MAX_REQUESTS = 2_000_000


@dataclass(frozen=True, eq=False)
class Arrivals:
    """Arrival times (s, ascending) with each request's prompt and output length in tokens."""

    time: np.ndarray
    prompt: np.ndarray
    output: np.ndarray

    def __len__(self) -> int:
        return len(self.time)


def check_requests(expected: float, max_requests: int, what: str) -> None:
    """Refuse a run of more than `max_requests` requests before anything is allocated (NaN counts as too many)."""
    if not expected <= max_requests:
        raise InputError(
            f"{what} means about {expected:,.0f} simulated requests, more than the limit of {max_requests:,}.",
            hint="lower --rate or --duration (or --speedup a shorter trace), or raise --max-requests",
        )


def poisson(
    workload: Workload, rate: float, duration: float, rng: np.random.Generator, *, max_requests: int = MAX_REQUESTS
) -> Arrivals:
    """A Poisson process of `rate` req/s over [0, duration): N ~ Poisson(rate·T), times uniform given N.

    Raises InputError when rate·T exceeds `max_requests`."""
    check_requests(rate * duration, max_requests, f"{rate:g} req/s (--rate) for {duration:g} s (--duration)")
    n = int(rng.poisson(rate * duration))
    times = np.sort(rng.uniform(0.0, duration, n))
    return Arrivals(times, workload.prompt.sample(rng, n), workload.output.sample(rng, n))


def replay(
    trace: Trace, speedup: float = 1.0, duration: float | None = None, *, max_requests: int = MAX_REQUESTS
) -> Arrivals:
    """The trace's own arrivals, time compressed by `speedup`, cut at `duration` seconds if given.

    Raises InputError when the compressed span is not finite or more than `max_requests` remain."""
    with np.errstate(over="ignore"):  # an overflowing speedup is refused just below
        times = trace.arrival_s / speedup
    if len(times) and not np.isfinite(times[-1]):
        raise InputError(f"--speedup {speedup:g} stretches the trace's {trace.arrival_s[-1]:g} s beyond any time.")
    keep = slice(None) if duration is None else slice(0, int(np.searchsorted(times, duration, side="left")))
    check_requests(len(times[keep]), max_requests, "the trace (within --duration)")
    return Arrivals(times[keep], trace.prompt[keep], trace.output[keep])
