"""Expected failures of the planner.

Each carries a one-paragraph message for the user; the CLI prints it and exits 2.
Bugs are *not* wrapped: they keep their traceback.
"""

from __future__ import annotations


def shown(value: object, limit: int = 60) -> str:
    """A value as a message quotes it: repr, cut after `limit` characters with the full length said, so a
    200,000-character field does not become a 200,000-character message."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}… ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


class PlannerError(Exception):
    """Base of every expected planner failure (bad input, infeasible problem)."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        return f"{self.message}\nTo fix: {self.hint}" if self.hint else self.message


class InputError(PlannerError):
    """A file or option the user gave is malformed; the message names file and field."""


class UnitError(ValueError):
    """A quantity string could not be parsed; raised inside validation, so pydantic adds the field path."""


class InfeasibleError(PlannerError):
    """The input is well formed but no plan exists (e.g. the model fits on no GPU combination)."""


class PlanError(InputError):
    """A plan that does not fit the cluster it is evaluated against, or that vLLM could not run."""
