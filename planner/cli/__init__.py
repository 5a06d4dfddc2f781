"""`hexplan`: the planner's command line. Thin: parse, load, call one function, render.

Each command group lives in its own module and registers itself on `app`; expected
failures (`PlannerError`) print one paragraph to stderr and exit 2, bugs keep their traceback.
"""

from __future__ import annotations

import sys

from rich.markup import escape

from planner.cli.app import app, console_err, flush_notes
from planner.errors import PlannerError

# Importing the command modules registers their commands on `app`.
from planner.cli import costs, diff, draw, export, inputs, plans, provision, simulate, solve  # noqa: F401  isort: skip


def main() -> None:
    """Run the command; its notes (planner.cli.app.note) follow its output, unless it failed."""
    try:
        app()
    except PlannerError as exc:
        flush_notes(show=False)
        console_err.print(f"[bold red]error:[/] {escape(exc.render())}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except SystemExit:
        flush_notes(show=True)  # typer ends every command (0, or check's 1 for stale) with SystemExit
        raise
    flush_notes(show=True)
