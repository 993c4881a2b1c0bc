"""Commands over many points: sweeps, reports, comparisons, validation and the demo."""

from __future__ import annotations

import json
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from gpusim.cli.common import (
    DEFAULT_LIMITS,
    MaxEvents,
    MaxMemoryGB,
    MaxPoints,
    app,
    check_output_folder,
    err,
    fail,
    guard,
    guard_simulation,
    out,
)
from gpusim.cli.tables import Cell, Column, fitted_table
from gpusim.run_limits import Limits

if TYPE_CHECKING:
    from gpusim.spec.scenario import ResolvedScenario
    from gpusim.sweep import ResultStore, SweepOutcome, SweepProgress
    from gpusim.sweep.executors import ExecutorKind
    from gpusim.validate import CaseResult

# The model, the sweep machinery, pyarrow and matplotlib are imported by the commands that use
# them, so that `gpusim --help` starts at once.


def shipped_ledger() -> Path:
    """The ledger a report's "known to be off" section is drawn from unless ``--ledger`` names
    one."""
    from gpusim.spec.refs import data_root

    return data_root() / "validation" / "calibration_points.json"


def _run_sweep_file(
    sweep_file: Path,
    output: Path | None,
    workers: int,
    executor: str,
    scheduler: str | None,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[ResultStore, SweepOutcome]:
    from gpusim.sweep import (
        ResultStore,
        check_metrics,
        load_sweep,
        make_executor,
        plan_points,
        run_sweep,
    )

    sweep = guard(lambda: load_sweep(sweep_file))
    base, points = guard(lambda: plan_points(sweep, sweep_file, limits))
    total = len(points)
    guard(lambda: check_metrics(sweep, sweep_file))
    folder = output if output is not None else Path("results") / sweep.name
    check_output_folder(folder)
    store = ResultStore(folder)
    manifest_fields = {
        "name": sweep.name,
        "description": sweep.description,
        "metrics": sweep.metrics,
        "baseline": sweep.baseline,
        "combine": sweep.combine,
        "sweep_file": str(sweep_file),
    }
    out.print(f"sweep '{sweep.name}': {total} points -> {store.root}")
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=out, transient=False) as bar:
        task = bar.add_task("points", total=None, counts="")

        def show(p: SweepProgress) -> None:
            counts = f"done {p.done + p.skipped} failed {p.failed} remaining {p.remaining}"
            bar.update(task, total=p.total, completed=p.total - p.remaining, counts=counts)

        kind: ExecutorKind = "dask" if executor == "dask" else "process"
        with ExitStack() as stack:
            pool = guard(lambda: stack.enter_context(make_executor(kind, workers, scheduler)))
            outcome = guard(
                lambda: run_sweep(
                    points,
                    store,
                    pool,
                    base=base,
                    total=total,
                    manifest_fields=manifest_fields,
                    on_progress=show,
                    on_warning=_warn,
                )
            )
    rows = guard(store.rows)
    csv_path = guard(lambda: store.write_summary_csv(rows))
    p = outcome.progress
    out.print(
        f"{p.done} computed, {p.skipped} already stored, {p.failed} failed; wrote {csv_path}",
        highlight=False,
    )
    for row in rows:
        if row["status"] == "failed":
            err.print(
                f"point {row['point']} failed: {row['error']}", highlight=False, soft_wrap=True
            )
    if outcome.interrupted:
        err.print(f"sweep stopped: {outcome.interrupted}", highlight=False)
    return store, outcome


def _warn(message: str) -> None:
    err.print(f"warning: {message}", highlight=False, soft_wrap=True, markup=False)


@app.command()
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep JSON file.")],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Results folder \\[default: results/<name>/]."),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 2,
    executor: Annotated[
        str, typer.Option(help="'process' (local worker processes) or 'dask' (LocalCluster).")
    ] = "process",
    scheduler: Annotated[
        str | None, typer.Option(help="Address of a running Dask scheduler (tcp://HOST:PORT).")
    ] = None,
    max_events: MaxEvents = DEFAULT_LIMITS.max_events,
    max_memory_gb: MaxMemoryGB = DEFAULT_LIMITS.max_memory_GB,
    max_points: MaxPoints = DEFAULT_LIMITS.max_points,
) -> None:
    """Validate every point, then run them (resumable), store results and write summary.csv."""
    if executor not in ("process", "dask"):
        fail(f"--executor: expected 'process' or 'dask', got '{executor}'")
    limits = Limits(max_events=max_events, max_memory_GB=max_memory_gb, max_points=max_points)
    _, outcome = _run_sweep_file(sweep_file, output, workers, executor, scheduler, limits)
    if not outcome.ok:
        raise typer.Exit(1)


def _load_trace(
    store: ResultStore, rows: list[dict[str, Any]], point: int | None
) -> dict[int, Any]:
    """The stored trace of ``point``, or of the first point that has one that reads (only one
    is plotted); a trace that does not read is skipped with a warning."""
    from gpusim.export.perfetto import events_from_chrome

    candidates = [r for r in rows if point is None or r["point"] == point]
    for row in candidates:
        path = store.trace_path(row["scenario_hash"])
        if path is None:
            continue
        try:
            events = events_from_chrome(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            _warn(f"{path}: does not read as a trace (truncated or corrupt); not drawn")
            continue
        return {row["point"]: events}
    return {}


def _write_sweep_report(
    store: ResultStore,
    target: Path,
    baseline: str | None,
    gantt_point: int | None,
    fmt: str,
    ledger: Path | None = None,
) -> None:
    from gpusim.report import write_report
    from gpusim.report.caveats import report_caveats

    manifest = guard(store.read_manifest)
    rows = guard(store.rows)
    for shard in store.unreadable_shards():
        _warn(f"{shard}: does not read (truncated or corrupt); its points show as pending")
    chosen = baseline if baseline is not None else manifest.get("baseline")
    traces = _load_trace(store, rows, gantt_point)
    report_format: Literal["html", "pdf"] = "pdf" if fmt == "pdf" else "html"
    check_output_folder(target.parent)
    if target.is_dir():
        fail(f"-o {target}: is a folder; give the report file's name")
    try:
        titles = write_report(
            target,
            manifest,
            rows,
            traces,
            baseline=chosen,
            gantt_point=gantt_point,
            fmt=report_format,
            caveats=report_caveats(manifest, ledger or shipped_ledger()),
        )
    except ValueError as exc:
        fail(f"{store.root}: {exc}")
    except OSError as exc:
        fail(f"{exc.filename or target}: cannot write: {exc.strerror or exc}")
    out.print(f"wrote {target} ({len(titles)} figures)", highlight=False)


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="A sweep results folder.")],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Report file \\[default: RESULTS/report.html]."),
    ] = None,
    baseline: Annotated[
        str | None, typer.Option(help="System to draw speedups against \\[default: the sweep's].")
    ] = None,
    gantt_point: Annotated[
        int | None, typer.Option(help="Point whose timeline to draw \\[default: first traced].")
    ] = None,
    format_: Annotated[str, typer.Option("--format", help="'html' or 'pdf'.")] = "html",
    ledger: Annotated[
        Path | None,
        typer.Option(
            help="Validation ledger saying where the model is known to be off "
            "\\[default: the shipped validation/calibration_points.json]."
        ),
    ] = None,
) -> None:
    """Write a self-contained HTML (or PDF) report of a sweep's results."""
    from gpusim.sweep import ResultStore
    from gpusim.validate import load_ledger

    if format_ not in ("html", "pdf"):
        fail(f"--format: expected 'html' or 'pdf', got '{format_}'")
    if ledger is not None:
        guard(lambda: load_ledger(ledger))  # a named ledger that does not load is an error
    target = output if output is not None else results / f"report.{format_}"
    _write_sweep_report(ResultStore(results), target, baseline, gantt_point, format_, ledger)


COMPARE_COLUMNS = (
    Column("metric", wrap=True, keep=2),
    Column("A", "right", keep=2),
    Column("B", "right", keep=2),
    Column("B/A", "right", keep=2),
)


def _load_limited(file: Path, limits: Limits) -> ResolvedScenario:
    from gpusim.limits import check_limits
    from gpusim.spec.loading import load_scenario

    scenario = load_scenario(file, {"options.trace": False})
    check_limits(scenario, file, limits)
    return scenario


@app.command()
def compare(
    scenario_a: Annotated[Path, typer.Argument(help="First scenario (the reference).")],
    scenario_b: Annotated[Path, typer.Argument(help="Second scenario.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Folder for compare.json and compare.svg.")
    ] = None,
    max_events: MaxEvents = DEFAULT_LIMITS.max_events,
    max_memory_gb: MaxMemoryGB = DEFAULT_LIMITS.max_memory_GB,
) -> None:
    """Run two scenarios and report their metrics side by side (B/A ratios)."""
    from gpusim.export.files import write_json_atomic, write_text_atomic
    from gpusim.report.figures import comparison_bars
    from gpusim.report.format import format_metric
    from gpusim.report.html import figure_svg
    from gpusim.simulate import simulate

    limits = Limits(max_events=max_events, max_memory_GB=max_memory_gb)
    loaded = [guard(partial(_load_limited, file, limits)) for file in (scenario_a, scenario_b)]
    if output is not None:
        check_output_folder(output)
    res_a = guard_simulation(lambda: simulate(loaded[0]), scenario_a)
    res_b = guard_simulation(lambda: simulate(loaded[1]), scenario_b)
    rows = []
    cells: list[list[Cell]] = []
    for name in [m for m in res_a.metrics if m in res_b.metrics]:
        a, b = res_a.metrics[name], res_b.metrics[name]
        ratio = b / a if a else float("nan")
        rows.append({"metric": name, "a": a, "b": b, "ratio": ratio})
        cells.append([name, format_metric(name, a), format_metric(name, b), f"{ratio:.3g}"])
    title = f"A = {res_a.scenario}   B = {res_b.scenario}"
    table = fitted_table(title, COMPARE_COLUMNS, cells, out.width)
    only = sorted(set(res_a.metrics) ^ set(res_b.metrics))
    out.print(table)
    if only:
        out.print(f"metrics in only one of them: {', '.join(only)}", highlight=False)
    folder = (
        output
        if output is not None
        else Path("results") / f"compare_{res_a.scenario}_{res_b.scenario}"
    )
    doc = {"a": res_a.summary(), "b": res_b.summary(), "metrics": rows}
    check_output_folder(folder)
    guard(lambda: write_json_atomic(folder / "compare.json", doc))
    fig = comparison_bars(res_a.metrics, res_b.metrics, res_a.scenario, res_b.scenario)
    guard(lambda: write_text_atomic(folder / "compare.svg", figure_svg(fig)))
    out.print(f"wrote {folder / 'compare.json'} and {folder / 'compare.svg'}", highlight=False)


VALIDATION_COLUMNS = (
    Column("case", keep=3),
    Column("kind", keep=1),
    Column("source", wrap=True, keep=0),
    Column("metric", wrap=True, keep=2),
    Column("expected", "right", keep=3),
    Column("predicted", "right", keep=3),
    Column("error %", "right", keep=3),
    Column("tol %", "right", keep=2),
    Column("ok", keep=3),
)
"""The columns of ``gpusim validate``'s table; at 80 columns the source and kind are left out."""


def _validation_row(case: CaseResult) -> list[Cell]:
    expected = f"{case.expected:.4g} {case.unit}"
    head: list[Cell] = [case.id, case.kind, Text(case.source), Text(case.metric), expected]
    if case.error is not None or case.predicted is None or case.error_pct is None:
        error = Text(f"error: {case.error}", style="red")
        return [*head, "-", "-", f"{case.tolerance_pct:g}", error]
    return [
        *head,
        f"{case.predicted:.4g} {case.unit}",
        f"{case.error_pct:+.2f}",
        f"{case.tolerance_pct:g}",
        "yes" if case.within else "[red]no[/]",
    ]


@app.command()
def validate(
    ledger_file: Annotated[Path, typer.Argument(help="Validation ledger JSON file.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Folder for the CSV and JSON tables.")
    ] = None,
) -> None:
    """Run every case of a validation ledger and print predicted against published values."""
    from gpusim.validate import load_ledger, validate_ledger
    from gpusim.validate import write_report as write_validation

    ledger = guard(lambda: load_ledger(ledger_file))
    if output is not None:
        check_output_folder(output)
    result = guard(lambda: validate_ledger(ledger, ledger_file.parent))
    rows = [_validation_row(case) for case in result.cases]
    out.print(fitted_table(f"validation: {ledger.name}", VALIDATION_COLUMNS, rows, out.width))
    share = None if result.share_within is None else 100 * result.share_within
    out.print(
        f"all cases: median |error| {_pct(result.median_abs_error_pct)}, "
        f"max {_pct(result.max_abs_error_pct)}, within tolerance {_pct(share)}",
        highlight=False,
    )
    out.print(
        f"prediction cases only: median |error| {_pct(result.prediction_median_abs_error_pct)}, "
        f"max {_pct(result.prediction_max_abs_error_pct)}",
        highlight=False,
    )
    if output is not None:
        csv_path, json_path = guard(lambda: write_validation(result, output))
        out.print(f"wrote {csv_path} and {json_path}", highlight=False)
    if not result.all_within:
        raise typer.Exit(1)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} %"


DEMO_SWEEPS = {
    "alltoall": "demo_alltoall_sweep.json",
    "launch": "demo_launch_sweep.json",
    "moe": "moe_weak_scaling_sweep.json",
}
"""Sub-folder of the demo's output -> shipped sweep file (in workloads/)."""


@app.command()
def demo(
    output: Annotated[Path, typer.Option("-o", "--output", help="Results folder.")] = Path(
        "results/demo"
    ),
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 2,
) -> None:
    """Run the built-in demo sweeps and write their reports (what gpusim is for, in two minutes)."""
    from gpusim.spec.refs import SHIPPED_DIRS, data_root

    failed = False
    for sub, name in DEMO_SWEEPS.items():
        sweep_file = data_root() / SHIPPED_DIRS["scenario"] / name
        folder = output / sub
        store, outcome = _run_sweep_file(sweep_file, folder, workers, "process", None)
        failed = failed or not outcome.ok
        _write_sweep_report(store, folder / "report.html", None, None, "html")
    if failed:
        raise typer.Exit(1)
