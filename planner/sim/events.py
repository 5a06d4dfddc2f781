"""The event loop: a heap of events ordered by (time, priority, seq), each handled by a function.

Why this shape (Vidur's, not its code): handlers are plain functions that read and change
entities and *return* the events they cause, so the loop is the only place that touches
the heap, and the order of simultaneous events is defined once — by `priority`, then by the
sequence number given at scheduling time (FIFO among equals), never by comparing payloads.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable
from typing import NamedTuple

# Simultaneous events: finish work before starting new work, arrivals last, samples after all.
FINISH, START, ARRIVE, SAMPLE = 0, 1, 2, 3


class Event(NamedTuple):
    time: float
    priority: int
    action: Callable[[float, object], Iterable[Event]]
    payload: object = None


def run(initial: Iterable[Event], until: float) -> float:
    """Process events in (time, priority, seq) order until the heap is empty or time passes `until`.

    Returns the time of the last event handled. O(E log E) for E events.
    """
    seq = itertools.count()  # scheduling order: FIFO among events of equal time and priority
    heap = [(event.time, event.priority, next(seq), event) for event in initial]
    heapq.heapify(heap)
    now = 0.0
    push, pop = heapq.heappush, heapq.heappop
    while heap and heap[0][0] <= until:
        now, _, _, event = pop(heap)
        for new in event.action(now, event.payload):
            push(heap, (new.time, new.priority, next(seq), new))
    return now
