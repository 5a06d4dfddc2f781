"""`hexplan draw`: the plan as a picture (SVG, PNG or self-contained HTML). Thin: read and evaluate the
plan, build the scene (planner.outputs.scene), write the file atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from planner.cli.app import (
    CalibrationOption,
    ClusterOption,
    PlanArgument,
    ProfilesOption,
    app,
    console,
    evaluate_plan_file,
)
from planner.errors import InputError
from planner.yamlio import write_atomic

DRAW_FORMATS = (".svg", ".png", ".html")


@app.command()
def draw(
    plan_file: PlanArgument,
    output: Annotated[Path, typer.Option("--output", "-o", help="picture to write: .svg, .png (matplotlib) or .html")],
    cluster: ClusterOption = None,
    profiles: ProfilesOption = None,
    calibration: CalibrationOption = None,
) -> None:
    """Draw the plan: nodes and GPUs coloured by replica and role, pipeline stages, KV routes, the bottleneck."""
    suffix = output.suffix.lower()
    if suffix not in DRAW_FORMATS:
        raise InputError(f"-o {output}: expected a file ending in {', '.join(DRAW_FORMATS)}.")
    _, plan, the_cluster, _ = evaluate_plan_file(plan_file, cluster, profiles, calibration)
    from planner.outputs.scene import build_scene

    scene = build_scene(plan, the_cluster, plan_file.name)
    if suffix == ".png":
        from planner.outputs.raster import to_png

        write_atomic(output, to_png(scene))
    else:
        from planner.outputs.svg import to_html, to_svg

        write_atomic(output, to_svg(scene) if suffix == ".svg" else to_html(scene, plan, f"hexgen2 plan {plan_file}"))
    console.print(f"wrote {output}")
