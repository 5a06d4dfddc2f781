"""Expected failures of the launcher: one paragraph for the user, exit status 2, no traceback."""

from __future__ import annotations

from planner.errors import PlannerError


class LaunchError(PlannerError):
    """Base of every expected launcher failure (a plan it cannot run, a cluster that lacks what it names);
    shares the planner's message, hint and exit status 2."""


def listed(title: str, problems: list[str]) -> str:
    """One message listing every problem, so the user fixes them all in one round."""
    return title + "\n" + "\n".join(f"  - {p}" for p in problems)
