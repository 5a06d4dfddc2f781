"""A replica's parallel layout: pipeline stages of TP groups, each holding a contiguous range of layers.

Why its own module: the cost model, the layout search, the plan assembly and the simulator all pass
layouts around; the record is plain data with no cost attached.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: `tp` GPUs of one type on one node holding layers [layer_start, layer_end)."""

    gpus: tuple[str, ...]
    layer_start: int
    layer_end: int

    @property
    def tp(self) -> int:
        return len(self.gpus)

    @property
    def layers(self) -> int:
        return self.layer_end - self.layer_start


@dataclass(frozen=True)
class Layout:
    """A replica's parallel layout: stages in pipeline order covering every layer exactly once."""

    stages: tuple[Stage, ...]

    @property
    def pp(self) -> int:
        return len(self.stages)

    @property
    def tp(self) -> int:
        return self.stages[0].tp

    @cached_property
    def gpus(self) -> tuple[str, ...]:
        return tuple(g for stage in self.stages for g in stage.gpus)
