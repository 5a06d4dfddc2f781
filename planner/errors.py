"""Expected failures of the planner.

Each carries a one-paragraph message for the user; the CLI prints it and exits 2.
Bugs are *not* wrapped: they keep their traceback.
"""

from __future__ import annotations


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
