"""Regenerate the golden plans in tests/golden/: the only way they change.

A golden plan pins the scheduler's exact output (groups, roles, layouts, routes, every figure) for
one input and seed, so any change of behaviour shows up in review as a diff of these files. The test
(tests/test_solver.py) runs the same commands and compares bytes. After running this script, read

    git diff tests/golden/

and commit the new files only if every changed decision is intended. Run from anywhere:

    .venv/bin/python scripts/refresh_goldens.py

The commands run from the repository root with relative paths, because a plan records the cluster
path as given.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# golden file (relative to ROOT) → `hexplan` arguments that produce it (the output option is added)
# The two `--roles disaggregated` goldens have no SLO: they are HexGen-2 as published, and must stay
# byte-identical to what the planner wrote before SLOs, goodput and mixed roles existed (issue 12).
GOLDENS: dict[str, tuple[str, ...]] = {
    "tests/golden/tiny.plan.yaml": ("solve", "examples/tiny.yaml", "--seed", "0", "--time-limit", "120", "--quiet"),
    "tests/golden/paper-hetero-1.disaggregated.plan.yaml": (
        "solve", "examples/paper-hetero-1.yaml", "--roles", "disaggregated", "--seed", "0", "--time-limit", "120",
        "--quiet",
    ),
    "tests/golden/paper-hetero-3.disaggregated.plan.yaml": (
        "solve", "examples/paper-hetero-3.yaml", "--roles", "disaggregated", "--seed", "0", "--time-limit", "120",
        "--quiet",
    ),
}  # fmt: skip


def main() -> None:
    hexplan = Path(sys.executable).with_name("hexplan")  # the entry point installed next to this interpreter
    for golden, args in GOLDENS.items():
        subprocess.run([str(hexplan), *args, "--output", golden], cwd=ROOT, check=True)
        print(f"wrote {golden}")


if __name__ == "__main__":
    main()
