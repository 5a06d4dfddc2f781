"""`hexplan diff` (semantic plan diff with CI gates) and `hexplan check` (is a plan still fresh).

Exit status: 0 passes (diff: every gate holds; check: the plan is fresh), 1 a gate failed or
the plan is stale, 2 bad input (unreadable file, a plan that cannot run on its cluster).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from planner.cli.app import (
    CalibrationOption,
    PlanArgument,
    ProfilesOption,
    SloAttainmentOption,
    SloTpotOption,
    SloTtftOption,
    app,
    console,
    console_err,
    evaluate_plan_file,
    load_plan_cluster,
    note,
    resolve_plan_cluster,
    slo_override,
)
from planner.errors import InputError, PlanError
from planner.inputs.problem import Cluster
from planner.plans.checks import calibration_changes, check_plan
from planner.plans.diff import Change, MetricDelta, PlanDiff, RouteDiff, diff_plans, diff_to_dict
from planner.plans.gates import GateResult, Gates, check_gates, gates_to_dict
from planner.plans.schema import Plan, read_plan
from planner.plans.slo import SloOverride, resolve_slo, slo_line, with_slo


class Format(StrEnum):
    table = "table"
    markdown = "markdown"
    json = "json"


FormatOption = Annotated[
    Format, typer.Option("--format", "-f", help="table (rich), markdown (for a PR comment) or json")
]


# ---- text of single values, shared by the table and markdown renderers


def metric_value(m: MetricDelta, value: float) -> str:
    unit = m.metric.unit
    if unit == "s":
        return f"{value * 1e3:.1f} ms"
    if unit == "$/h":
        return f"${value:.2f}/h"
    if unit in ("tokens/s", "GPUs"):
        return f"{value:,.0f}"
    return f"{value:.3f}"


def metric_delta(m: MetricDelta) -> tuple[str, str]:
    if not m.changed:
        return "0", "0%"
    sign = "+" if m.delta > 0 else "-"
    magnitude = metric_value(m, abs(m.delta)).removeprefix("$")
    pct = "n/a" if m.pct is None else f"{m.pct:+.2f}%"
    return f"{sign}{'$' if m.metric.unit == '$/h' else ''}{magnitude}", pct


def verdict(m: MetricDelta) -> str:
    if not m.changed or m.metric.better == 0:
        return ""
    return "better" if (m.delta > 0) == (m.metric.better > 0) else "worse"


def change_text(c: Change) -> str:
    if c.field == "gpus":
        old, new = set(c.old), set(c.new)  # type: ignore[call-overload]
        return "gpus " + " ".join([f"+{g}" for g in sorted(new - old)] + [f"-{g}" for g in sorted(old - new)])
    if c.field == "layers":
        return f"layers {_split(c.old)} → {_split(c.new)}"
    return f"{c.field} {_value(c.old)} → {_value(c.new)}"


def _value(value: object) -> str:
    """A changed value as the table shows it: floats to 4 significant digits (a field may be absent: None)."""
    if value is None:
        return "—"
    return f"{value:.4g}" if isinstance(value, float) else _plain(value)


def _split(layers: object) -> str:
    return "|".join(f"{a}–{b}" for a, b in layers)  # type: ignore[attr-defined]


def _plain(value: object) -> str:
    return ",".join(map(_plain, value)) if isinstance(value, list | tuple) else str(value)


def route_text(r: RouteDiff) -> tuple[str, str]:
    old = f"{r.old.rate_rps:.3f}" if r.old else "—"
    new = f"{r.new.rate_rps:.3f}" if r.new else "—"
    return f"{old} → {new}", f"{r.old_weight:.3f} → {r.new_weight:.3f}"


def replica_rows(diff: PlanDiff) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for r in diff.replica_changes:
        shown = r.new or r.old
        assert shown is not None
        details = (
            "; ".join(change_text(c) for c in r.changes if c.field != "id")
            if r.kind == "changed"
            else (f"TP×PP {shown.tp}×{shown.pp}, layers {_split([s.layers for s in shown.stages])}")
        )
        rows.append((r.kind, r.label, shown.role, ",".join(sorted(shown.gpus)), details))
    return rows


def gpu_lines(diff: PlanDiff) -> list[str]:
    lines = []
    if diff.moved:
        moves = ", ".join(f"{m.gpu} ({m.old_replica} → {m.new_replica or 'idle'})" for m in diff.moved)
        lines.append(f"moved GPUs ({len(diff.moved)}): {moves}")
    if diff.added_gpus:
        lines.append(f"GPUs newly in service ({len(diff.added_gpus)}): {', '.join(diff.added_gpus)}")
    if diff.gone_gpus:
        lines.append(f"GPUs no longer in the cluster ({len(diff.gone_gpus)}): {', '.join(diff.gone_gpus)}")
    return lines


def gate_line(g: GateResult) -> str:
    return f"{'PASS' if g.passed else 'FAIL'} {g.name}: {g.detail}"


# ---- renderers


@dataclass(frozen=True)
class Report:
    """What one command prints, in any format; `sides` name the two columns compared."""

    command: str
    status: str  # the headline word: passed / FAILED / report (diff), fresh / stale (check)
    title: str
    sides: tuple[str, str]
    diff: PlanDiff
    gates: tuple[GateResult, ...] = ()
    notes: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)


def render_table(report: Report) -> None:
    diff = report.diff
    metrics = Table(title=report.title)
    for column in ("metric", *report.sides, "Δ", "Δ%", ""):
        metrics.add_column(column, justify="left" if column == "metric" else "right")
    for m in diff.metrics:
        metrics.add_row(m.metric.label, metric_value(m, m.old), metric_value(m, m.new), *metric_delta(m), verdict(m))
    metrics.add_row("bottleneck", *diff.bottleneck, "", "", "")
    console.print(metrics)
    if diff.replica_changes:
        replicas = Table(title="replicas")
        for column in ("change", "replica", "role", "GPUs", "details"):
            replicas.add_column(column, overflow="fold")
        for row in replica_rows(diff):
            replicas.add_row(*row)
        console.print(replicas)
    for line in gpu_lines(diff):
        console.print(line, soft_wrap=True)
    if diff.routes:
        routes = Table(title="KV routes (prefill → decode)")
        for column in ("from", "to", "rate req/s", "weight"):
            routes.add_column(column, justify="left" if column in ("from", "to") else "right")
        for r in diff.routes:
            routes.add_row(r.source, r.target, *route_text(r))
        console.print(routes)
    if diff.empty:
        console.print("[green]no differences[/]")
    for text in report.notes:
        console.print(f"[yellow]note[/]: {text}", soft_wrap=True)
    for g in report.gates:
        console.print(f"[{'green' if g.passed else 'bold red'}]{gate_line(g)}[/]", soft_wrap=True)


def render_markdown(report: Report) -> str:
    diff, gates = report.diff, report.gates
    lines = [f"### hexplan {report.command} {report.status}: {report.title}", ""]
    lines += [f"- **{gate_line(g)}**" for g in gates]
    lines += [f"- note: {n}" for n in report.notes]
    if gates or report.notes:
        lines.append("")
    lines += [f"| metric | {report.sides[0]} | {report.sides[1]} | Δ | Δ% | |", "|---|---:|---:|---:|---:|---|"]
    for m in diff.metrics:
        lines.append(
            f"| {m.metric.label} | {metric_value(m, m.old)} | {metric_value(m, m.new)} | "
            f"{' | '.join(metric_delta(m))} | {verdict(m)} |"
        )
    lines += [f"| bottleneck | {diff.bottleneck[0]} | {diff.bottleneck[1]} | | | |", ""]
    if diff.replica_changes:
        lines += ["| change | replica | role | GPUs | details |", "|---|---|---|---|---|"]
        for kind, label, role, gpus, details in replica_rows(diff):
            lines.append(f"| {kind} | `{label}` | {role} | {gpus} | {details.replace('|', chr(92) + '|')} |")
        lines.append("")
    lines += [f"- {line}" for line in gpu_lines(diff)]
    if diff.moved or diff.added_gpus or diff.gone_gpus:
        lines.append("")
    if diff.routes:
        lines += ["| KV route | rate req/s | weight |", "|---|---:|---:|"]
        lines += [f"| `{r.source}` → `{r.target}` | {' | '.join(route_text(r))} |" for r in diff.routes]
        lines.append("")
    if diff.empty:
        lines += ["No differences.", ""]
    return "\n".join(lines)


def emit(fmt: Format, report: Report) -> None:
    if fmt is Format.json:
        body = report.extra | diff_to_dict(report.diff) | gates_to_dict(report.gates) | {"notes": list(report.notes)}
        typer.echo(json.dumps(body, indent=2, sort_keys=True))
    elif fmt is Format.markdown:
        typer.echo(render_markdown(report), nl=False)
    else:
        render_table(report)


# ---- loading


@dataclass(frozen=True)
class Evaluated:
    """A plan file, the cluster file it was evaluated on, and the honest plan."""

    file: Path
    cluster_file: Path
    recorded: Plan
    honest: Plan
    cluster: Cluster

    @property
    def sha_note(self) -> str | None:
        if self.cluster.sha256 == self.recorded.cluster.sha256:
            return None
        return (
            f"{self.file} was planned on a cluster file with sha256 {self.recorded.cluster.sha256[:12]}…, "
            f"but {self.cluster_file} has sha256 {self.cluster.sha256[:12]}… (the cluster changed since)."
        )

    def describe(self) -> dict:
        return {
            "file": self.file.as_posix(),
            "cluster": {
                "file": self.cluster_file.as_posix(),
                "sha256": self.cluster.sha256,
                "recorded_sha256": self.recorded.cluster.sha256,
            },
        }


def evaluated(
    plan_file: Path, cluster_file: Path | None, profiles: list[Path] | None, slo: SloOverride | None = None
) -> Evaluated:
    plan, honest, cluster, path = evaluate_plan_file(plan_file, cluster_file, profiles, slo=slo)
    return Evaluated(plan_file, path, plan, honest, cluster)


def fail_if(failed: bool, reasons: list[str]) -> None:
    if failed:
        for reason in reasons:
            console_err.print(f"[bold red]{reason}[/]", soft_wrap=True)
        raise typer.Exit(1)


# ---- commands


@app.command("diff")
def diff_command(
    old_file: Annotated[Path, typer.Argument(help="the plan in service (e.g. the committed plan.yaml)")],
    new_file: Annotated[Path, typer.Argument(help="the candidate plan")],
    cluster: Annotated[
        Path | None, typer.Option("--cluster", "-c", help="evaluate both plans on this cluster file")
    ] = None,
    old_cluster: Annotated[
        Path | None, typer.Option("--old-cluster", help="cluster file for the old plan (default: the one it records)")
    ] = None,
    new_cluster: Annotated[
        Path | None, typer.Option("--new-cluster", help="cluster file for the new plan (default: the one it records)")
    ] = None,
    fmt: FormatOption = Format.table,
    fail_on_regression: Annotated[
        float | None,
        typer.Option(min=0, metavar="PCT", help="exit 1 if throughput drops by more than PCT % (exactly PCT passes)"),
    ] = None,
    max_moved_gpus: Annotated[
        int | None,
        typer.Option(
            min=0, metavar="N", help="exit 1 if more than N GPUs change replica (GPU set) or role, or stop serving"
        ),
    ] = None,
    fail_on_cost_increase: Annotated[
        float | None,
        typer.Option(min=0, metavar="PCT", help="exit 1 if $/h rises by more than PCT % (exactly PCT passes)"),
    ] = None,
    ttft: SloTtftOption = None,
    tpot: SloTpotOption = None,
    attainment: SloAttainmentOption = None,
    profiles: ProfilesOption = None,
) -> None:
    """What changes from OLD to NEW: replicas matched by GPU set, moved GPUs, routes, metrics; CI gates.

    Both plans are re-evaluated (their recorded figures are ignored), each on its own cluster file
    unless --cluster is given: a re-plan compares the old plan on the old cluster with the new plan
    on the new one.
    """
    if cluster is not None and (old_cluster is not None or new_cluster is not None):
        raise InputError(
            "--cluster sets the cluster of both plans; do not combine it with --old-cluster/--new-cluster."
        )
    slo = slo_override(ttft, tpot, attainment)
    old = evaluated(old_file, old_cluster or cluster, profiles, slo)
    new = evaluated(new_file, new_cluster or cluster, profiles, slo)
    diff = diff_plans(old.honest, new.honest, new.cluster.gpu_by_id)
    gates = check_gates(diff, Gates(fail_on_regression, max_moved_gpus, fail_on_cost_increase))
    title = f"{old_file} ({old.cluster_file}) → {new_file} ({new.cluster_file})"
    notes = tuple(n for n in (old.sha_note, new.sha_note) if n)
    extra = {"old": old.describe(), "new": new.describe()}
    status = "FAILED" if not all(g.passed for g in gates) else "passed" if gates else "report"
    emit(fmt, Report("diff", status, title, ("old", "new"), diff, gates, notes, extra))
    fail_if(not all(g.passed for g in gates), [f"gate failed: {gate_line(g)}" for g in gates if not g.passed])


@app.command()
def check(
    plan_file: PlanArgument,
    cluster: Annotated[
        Path | None, typer.Option("--cluster", "-c", help="cluster file (default: the one the plan records)")
    ] = None,
    fmt: FormatOption = Format.table,
    ttft: SloTtftOption = None,
    tpot: SloTpotOption = None,
    attainment: SloAttainmentOption = None,
    profiles: ProfilesOption = None,
    calibration: CalibrationOption = None,
) -> None:
    """Is PLAN still valid for the cluster, and are its recorded figures what evaluation gives now?

    Exit 0 fresh, 1 stale (the report lists what changed; re-run `hexplan evaluate -o` or re-solve),
    2 invalid (GPUs missing, other GPU types, does not fit in memory, unreadable files).
    """
    plan = read_plan(plan_file)
    path = resolve_plan_cluster(plan_file, plan.cluster.file, cluster)
    loaded = load_plan_cluster(plan_file, plan.cluster.file, cluster, profiles, calibration)
    slo, source = resolve_slo(plan, loaded, slo_override(ttft, tpot, attainment), plan_name=str(plan_file))
    loaded = with_slo(loaded, slo)
    try:
        honest, diff = check_plan(plan, loaded)
    except PlanError as exc:
        raise PlanError(f"{plan_file} is not valid for {path}: {exc.message}", hint=exc.hint) from None
    note(f"{plan_file}: {slo_line(slo, source)}")
    ev = Evaluated(plan_file, path, plan, honest, loaded)
    calibrations = calibration_changes(plan, honest)
    fresh = diff.empty and not calibrations
    state = "fresh" if fresh else "stale"
    title = f"{plan_file} as recorded → evaluated on {path} now"
    notes = ((ev.sha_note,) if ev.sha_note else ()) + tuple(f"calibration changed: {c}" for c in calibrations)
    emit(
        fmt,
        Report("check", state, title, ("recorded", "now"), diff, (), notes, {"plan": ev.describe(), "state": state}),
    )
    if fmt is Format.table:
        console.print(f"[green]fresh[/]: {plan_file} matches {path}" if fresh else f"[red]stale[/]: {plan_file}")
    reasons = [f"stale: {plan_file}'s recorded figures differ from evaluating it on {path}"] if not diff.empty else []
    fail_if(not fresh, reasons + [f"stale: calibration changed: {c}" for c in calibrations])
