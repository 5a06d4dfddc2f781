"""What a simulation run reports: throughput, latency percentiles, SLO attainment, utilisation, queues.

Measurement window: requests *arriving* in [warmup, duration) are the sample for latency and
SLO attainment (a dropped or unfinished one counts as a miss); throughput counts requests
*finishing* in that window, divided by its length, so an overloaded run reports the rate it
actually served. Without an SLO, attainment is not defined (NaN, `null` in JSON).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from planner.inputs.problem import Slo
from planner.sim.entities import Request

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class SimResult:
    offered_rps: float
    arrived: int
    finished: int
    dropped: int
    unfinished: int
    throughput_rps: float
    output_tokens_per_s: float
    ttft_s: dict[str, float]
    tpot_s: dict[str, float]
    e2e_s: dict[str, float]
    slo: Slo | None
    slo_attainment: float  # NaN without an SLO
    preemptions: int
    replica_utilisation: dict[str, float]
    link_utilisation: dict[str, float]
    queue: list[tuple[float, int]]
    sim_seconds: float
    requests: Sequence[Request] = field(repr=False, compare=False)
    warmup_s: float = 0.0  # requests arriving in [warmup_s, window_end_s) are the sample
    window_end_s: float = 0.0

    def to_json(self) -> dict[str, object]:
        """Everything but the per-request records; deterministic for a given input and seed."""
        return {
            "offered_rps": self.offered_rps,
            "arrived": self.arrived,
            "finished": self.finished,
            "dropped": self.dropped,
            "unfinished": self.unfinished,
            "throughput_rps": self.throughput_rps,
            "output_tokens_per_s": self.output_tokens_per_s,
            "ttft_s": self.ttft_s,
            "tpot_s": self.tpot_s,
            "e2e_s": self.e2e_s,
            "slo": None
            if self.slo is None
            else {"ttft_s": self.slo.ttft, "tpot_s": self.slo.tpot, "attainment": self.slo.attainment},
            "slo_attainment": None if self.slo is None else self.slo_attainment,
            "preemptions": self.preemptions,
            "replica_utilisation": self.replica_utilisation,
            "link_utilisation": self.link_utilisation,
            "queue": [{"t": t, "waiting": n} for t, n in self.queue],
            "sim_seconds": self.sim_seconds,
        }


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {f"p{q}": float("nan") for q in PERCENTILES}
    return {f"p{q}": float(v) for q, v in zip(PERCENTILES, np.percentile(values, PERCENTILES), strict=True)}


def summarise(
    requests: Sequence[Request],
    *,
    warmup: float,
    duration: float,
    slo: Slo | None,
    preemptions: int,
    replica_utilisation: dict[str, float],
    link_utilisation: dict[str, float],
    queue: list[tuple[float, int]],
    sim_seconds: float,
) -> SimResult:
    arrival = np.array([r.arrival for r in requests])
    first = np.array([r.first_token for r in requests])
    finish = np.array([r.finish for r in requests])
    output = np.array([r.output for r in requests])
    dropped = np.array([bool(r.dropped) for r in requests], dtype=bool)  # bool even when there are none
    done = finish >= 0
    window = max(duration - warmup, 1e-9)
    sample = (arrival >= warmup) & (arrival < duration)
    served = done & (finish >= warmup) & (finish < duration)
    measured = sample & done
    ttft = first[measured] - arrival[measured]
    decoded = measured & (output > 1)
    tpot = (finish[decoded] - first[decoded]) / (output[decoded] - 1)
    e2e = finish[measured] - arrival[measured]
    tpot_all = np.zeros(len(requests))
    tpot_all[decoded] = tpot
    ok = measured.copy()
    if slo is not None and slo.ttft is not None:
        ok &= first - arrival <= slo.ttft
    if slo is not None and slo.tpot is not None:
        ok &= tpot_all <= slo.tpot
    n_sample = int(sample.sum())
    return SimResult(
        offered_rps=n_sample / window,
        arrived=len(requests),
        finished=int(done.sum()),
        dropped=int(dropped.sum()),
        unfinished=int((~done & ~dropped).sum()),
        throughput_rps=int(served.sum()) / window,
        output_tokens_per_s=float(output[served].sum()) / window,
        ttft_s=_percentiles(ttft),
        tpot_s=_percentiles(tpot),
        e2e_s=_percentiles(e2e),
        slo=slo,
        slo_attainment=float(ok.sum()) / n_sample if n_sample and slo is not None else float("nan"),
        preemptions=preemptions,
        replica_utilisation=replica_utilisation,
        link_utilisation=link_utilisation,
        queue=queue,
        sim_seconds=sim_seconds,
        requests=requests,
        warmup_s=warmup,
        window_end_s=duration,
    )
