"""Expected failures of the launcher: one paragraph for the user, exit status 2, no traceback."""

from __future__ import annotations


class LaunchError(Exception):
    """Base of every expected launcher failure (a plan it cannot run, a cluster that lacks what it names)."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        return f"{self.message}\nTo fix: {self.hint}" if self.hint else self.message


def listed(title: str, problems: list[str]) -> str:
    """One message listing every problem, so the user fixes them all in one round."""
    return title + "\n" + "\n".join(f"  - {p}" for p in problems)
