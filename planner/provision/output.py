"""Write the chosen mix: OUTDIR/cluster.yaml and OUTDIR/plan.yaml, both or neither.

Why staged: a failure after the cluster file is written must not leave a cluster without its plan (or a
new cluster beside an old plan). The plan is written atomically under a temporary name first, then the
cluster file atomically, then the plan is renamed into place; targets that are not plain files are
refused before anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path

from planner.errors import InfeasibleError, InputError
from planner.plans.schema import plan_to_yaml
from planner.provision.results import Candidate
from planner.yamlio import write_atomic

CLUSTER_FILE = "cluster.yaml"
PLAN_FILE = "plan.yaml"


def output_paths(outdir: Path) -> tuple[Path, Path]:
    """Where provision writes: the cluster file (the plan records this path) and the plan."""
    return outdir / CLUSTER_FILE, outdir / PLAN_FILE


def write_outputs(chosen: Candidate, outdir: Path) -> tuple[Path, Path]:
    """Write the chosen mix's cluster file and plan into `outdir` (created if missing)."""
    if chosen.plan is None:
        raise InfeasibleError(f"{chosen.label}: no plan to write ({chosen.problem})")
    cluster_path, plan_path = output_paths(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(
            f"{outdir}: is not a folder; -o names the folder to write {CLUSTER_FILE} and {PLAN_FILE} into."
        )
    for path in (cluster_path, plan_path):
        if path.exists() and not path.is_file():
            raise InputError(f"{path}: exists and is not a plain file; refusing to replace it.")
    staged = outdir / f".{PLAN_FILE}.provision"
    write_atomic(staged, plan_to_yaml(chosen.plan))
    try:
        write_atomic(cluster_path, chosen.text)
        os.replace(staged, plan_path)
    except OSError as exc:
        staged.unlink(missing_ok=True)
        raise InputError(f"{plan_path}: cannot write here: {exc.strerror}.") from None
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return cluster_path, plan_path
