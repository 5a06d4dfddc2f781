"""Which engines the router may use right now: active /health probes plus passive outlier ejection.

Pure bookkeeping (the clock is passed in), so every transition is tested without servers or sleeps:
- active: `unhealthy_after` failed probes in a row take a replica out of the rotation; `healthy_after`
  good probes in a row bring it back;
- passive: `eject_after` request errors in a row (refused, reset, timeout, 5xx, a broken answer) eject
  it at once, for `ejection_s` doubled per ejection in a row (capped at `max_ejection_s`) — a replica
  that keeps failing as soon as it returns stays out longer. It returns when the ejection has elapsed
  and a probe after that succeeds; a success on a real request resets the error count.
The router reads `down` on every request, so it is a set recomputed only when a replica changes state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from launcher.router_config import HealthPolicy

FORGIVE_AFTER_PROBES = 30  # good probes in a row after which the next ejection is short again


@dataclass
class ReplicaHealth:
    probe_failures: int = 0
    probe_successes: int = 0
    errors: int = 0  # request errors in a row
    probed_down: bool = False
    ejected_until: float | None = None  # set while passively ejected
    ejections_in_a_row: int = 0

    def is_down(self) -> bool:
        return self.probed_down or self.ejected_until is not None


class HealthBook:
    """Health of every backend by id; `down` is the set the routing policy must skip."""

    def __init__(self, ids: Iterable[str], policy: HealthPolicy) -> None:
        self.policy = policy
        self.replicas: dict[str, ReplicaHealth] = {i: ReplicaHealth() for i in ids}
        self.down: frozenset[str] = frozenset()
        self.ejections = 0  # total, for the metrics

    def track(self, ids: Iterable[str]) -> None:
        """Follow exactly these backends (a new config): new ones start healthy, removed ones are forgotten."""
        wanted = set(ids)
        self.replicas = {i: self.replicas.get(i, ReplicaHealth()) for i in sorted(wanted)}
        self._refresh()

    def _refresh(self) -> None:
        self.down = frozenset(i for i, h in self.replicas.items() if h.is_down())

    def request_succeeded(self, replica: str) -> None:
        health = self.replicas.get(replica)
        if health is not None and health.errors:
            health.errors = 0

    def request_failed(self, replica: str, now: float) -> bool:
        """Count a request error; True when it ejects the replica (it was up and reached `eject_after`)."""
        health = self.replicas.get(replica)
        if health is None:
            return False
        health.errors += 1
        if health.ejected_until is not None or health.errors < self.policy.eject_after:
            return False
        health.ejections_in_a_row += 1
        period = self.policy.ejection_s * 2 ** (health.ejections_in_a_row - 1)
        health.ejected_until = now + min(period, self.policy.max_ejection_s)
        health.probe_successes = 0
        self.ejections += 1
        self._refresh()
        return True

    def probed(self, replica: str, ok: bool, now: float) -> None:
        """Record one active probe's outcome."""
        health = self.replicas.get(replica)
        if health is None:
            return
        was_down = health.is_down()
        if ok:
            health.probe_failures = 0
            health.probe_successes += 1
            if health.probe_successes >= self.policy.healthy_after:
                health.probed_down = False
                if health.ejected_until is not None and now >= health.ejected_until:
                    health.ejected_until, health.errors = None, 0
        else:
            health.probe_successes = 0
            health.probe_failures += 1
            if health.probe_failures >= self.policy.unhealthy_after:
                health.probed_down = True
        if ok and not health.is_down() and health.probe_successes >= FORGIVE_AFTER_PROBES:
            health.ejections_in_a_row = 0  # a long healthy stretch forgives past ejections
        if health.is_down() != was_down:
            self._refresh()

    def summary(self) -> dict[str, str]:
        """replica → "up" | "down" (probes failing) | "ejected" (request errors), for /health and /admin/state."""
        return {
            i: "ejected" if h.ejected_until is not None else "down" if h.probed_down else "up"
            for i, h in self.replicas.items()
        }
