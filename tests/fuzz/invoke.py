"""Run `hexplan` or `hexlaunch` in this process, as the console scripts would, capturing everything.

Same approach as tests/conftest.py `_run_cli`: through the real `main` (so PlannerError becomes a
message and exit 2 exactly as for users) inside click's stream isolation. Anything that escapes
`main` other than SystemExit is a bug; its traceback is returned, not raised.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass

from typer.testing import CliRunner

KEEP = 10_000  # characters kept of the start and of the end of each stream


def _clip(text: str) -> str:
    return text if len(text) <= 2 * KEEP else f"{text[:KEEP]}\n[… {len(text) - 2 * KEEP} characters …]\n{text[-KEEP:]}"


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    error: str = ""  # traceback of an exception that escaped main()


def invoke(program: str, argv: list[str]) -> Outcome:
    if program == "hexplan":
        from planner.cli import main

        def call() -> None:
            sys.argv = ["hexplan", *argv]
            main()
    else:
        from launcher.cli import main as launch_main

        def call() -> None:
            launch_main(list(argv))

    runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
    saved = sys.argv
    error = ""
    with runner.isolation() as (out, err, _):
        try:
            call()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            code, error = -1, traceback.format_exc()
        finally:
            sys.argv = saved
            sys.stdout.flush()
            sys.stderr.flush()
        stdout = out.getvalue().decode(errors="replace")
        stderr = err.getvalue().decode(errors="replace")
    return Outcome(code, _clip(stdout), _clip(stderr), _clip(error))
