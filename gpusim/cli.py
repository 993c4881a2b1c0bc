"""The `gpusim` command line. The only module that prints."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from gpusim.errors import SimulationError, SpecError, UsageError
from gpusim.export.files import write_json_atomic
from gpusim.export.perfetto import chrome_trace
from gpusim.result import Result
from gpusim.simulate import simulate
from gpusim.spec.detect import detect_kind
from gpusim.spec.hardware import GPUSpec, HostCPUSpec, MemoryTierSpec
from gpusim.spec.loading import (
    load_model,
    load_profile,
    load_scenario,
    load_topology,
    load_workload,
    read_json,
)
from gpusim.spec.overrides import parse_assignment
from gpusim.spec.refs import SHIPPED_DIRS, data_root, shipped_names
from gpusim.spec.scenario import Fidelity
from gpusim.spec.schema import all_schemas
from gpusim.sweep import (
    ResultStore,
    SweepOutcome,
    SweepProgress,
    expand,
    load_sweep,
    make_executor,
    manifest_for,
    run_sweep,
)
from gpusim.sweep.executors import ExecutorKind

app = typer.Typer(
    help="gpusim: a calibrated discrete-event performance model of H100/GH200 GPU nodes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)
T = TypeVar("T")

EXIT_BAD_INPUT = 2


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def _guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; input and simulation errors become one line on stderr and exit code 2."""
    try:
        return fn()
    except SpecError as exc:
        _fail(str(exc))
    except SimulationError as exc:
        _fail(f"cannot simulate: {exc}")
    except UsageError as exc:
        _fail(str(exc))


def _format_value(name: str, value: float) -> str:
    if name.endswith("_s"):
        if value >= 1:
            return f"{value:.4g} s"
        if value >= 1e-3:
            return f"{value * 1e3:.4g} ms"
        return f"{value * 1e6:.4g} us"
    if name.endswith("_GBps"):
        return f"{value:.4g} GB/s"
    if name.startswith("bytes") or name.endswith("_B"):
        return f"{value / 1e6:.4g} MB"
    return f"{value:.4g}"


def _print_result(result: Result) -> None:
    table = Table(title=f"{result.scenario} ({result.fidelity}, seed {result.seed})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result.metrics.items():
        table.add_row(name, _format_value(name, value))
    out.print(table)
    if result.per_gpu:
        per = Table(title="per GPU")
        cols = sorted({k for row in result.per_gpu.values() for k in row})
        per.add_column("gpu")
        for c in cols:
            per.add_column(c, justify="right")
        for gpu, row in result.per_gpu.items():
            per.add_row(gpu, *(_format_value(c, row[c]) if c in row else "" for c in cols))
        out.print(per)
    out.print(f"simulated in {result.wall_s:.3f} s wall, {result.events} events")


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario JSON file.")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a value: dotted.path=value (repeatable)."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Output folder [default: results/<name>/]."),
    ] = None,
    fidelity: Annotated[Fidelity | None, typer.Option(help="Override options.fidelity.")] = None,
    trace: Annotated[
        bool | None, typer.Option("--trace/--no-trace", help="Override options.trace.")
    ] = None,
) -> None:
    """Simulate one scenario, print a summary and write summary.json (and trace.json)."""
    overrides: dict[str, Any] = dict(_guard(lambda: [parse_assignment(s) for s in set_ or []]))
    if fidelity is not None:
        overrides["options.fidelity"] = fidelity.value
    if trace is not None:
        overrides["options.trace"] = trace
    resolved = _guard(lambda: load_scenario(scenario, overrides))
    result = _guard(lambda: simulate(resolved))
    folder = output if output is not None else Path("results") / resolved.name
    write_json_atomic(folder / "summary.json", result.summary())
    _print_result(result)
    out.print(f"wrote {folder / 'summary.json'}")
    if result.trace is not None:
        write_json_atomic(folder / "trace.json", chrome_trace(result.trace, resolved.name))
        out.print(f"wrote {folder / 'trace.json'} (open in https://ui.perfetto.dev)")


def _check_one(path: Path) -> str:
    raw = read_json(path)
    kind = detect_kind(raw)
    if kind == "scenario":
        return f"scenario '{load_scenario(path).name}'"
    if kind == "topology":
        return f"topology '{load_topology(path).name}'"
    if kind == "workload":
        return f"workload of kind '{load_workload(path).kind}'"
    if kind == "profile":
        return f"profile '{load_profile(path).id}'"
    if kind == "gpu":
        return f"gpu '{load_model(GPUSpec, path).name}'"
    if kind == "cpu":
        return f"cpu '{load_model(HostCPUSpec, path).name}'"
    if kind == "memory":
        return f"memory '{load_model(MemoryTierSpec, path).name}'"
    raise SpecError(path, "$", "cannot tell what kind of gpusim file this is")


@app.command()
def check(files: Annotated[list[Path], typer.Argument(help="Spec files to validate.")]) -> None:
    """Validate scenario, topology, workload, profile or component files."""
    for path in files:
        what = _guard(lambda path=path: _check_one(path))  # type: ignore[misc]
        out.print(f"ok: {path}: {what}", highlight=False)


@app.command()
def schema(
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder to write to.")] = Path(
        "schemas"
    ),
) -> None:
    """Write the JSON Schemas of every kind of spec file."""
    for name, body in all_schemas().items():
        write_json_atomic(output / name, body)
        out.print(f"wrote {output / name}")


@app.command("list")
def list_() -> None:
    """Show the shipped topologies, workloads and calibration profiles."""
    root = data_root()
    for kind in ("scenario", "topology", "profile"):
        table = Table(title=f"{kind} ({SHIPPED_DIRS[kind]}/)")
        table.add_column("name")
        table.add_column("description")
        for name in shipped_names(kind):
            try:
                raw = json.loads((root / SHIPPED_DIRS[kind] / f"{name}.json").read_text())
            except (OSError, json.JSONDecodeError):
                raw = {}
            desc = raw.get("description", "") if isinstance(raw, dict) else ""
            table.add_row(name, str(desc))
        out.print(table)


def _run_sweep_file(
    sweep_file: Path,
    output: Path | None,
    workers: int,
    executor: str,
    scheduler: str | None,
) -> tuple[ResultStore, SweepOutcome]:
    sweep = _guard(lambda: load_sweep(sweep_file))
    points = _guard(lambda: expand(sweep, sweep_file))
    store = ResultStore(output if output is not None else Path("results") / sweep.name)
    store.prepare()
    store.write_manifest(
        manifest_for(
            points,
            sweep.name,
            sweep.description,
            metrics=sweep.metrics,
            baseline=sweep.baseline,
            sweep_file=str(sweep_file),
        )
    )
    out.print(f"sweep '{sweep.name}': {len(points)} points -> {store.root}")
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
        with _guard(lambda: make_executor(kind, workers, scheduler)) as pool:
            outcome = run_sweep(points, store, pool, workers=workers, on_progress=show)
    rows = store.rows()
    csv_path = store.write_summary_csv(rows)
    p = outcome.progress
    out.print(
        f"{p.done} computed, {p.skipped} already stored, {p.failed} failed; wrote {csv_path}",
        highlight=False,
    )
    for row in rows:
        if row["status"] == "failed":
            err.print(f"point {row['point']} failed: {row['error']}", highlight=False, soft_wrap=True)
    if outcome.interrupted:
        err.print(f"sweep stopped: {outcome.interrupted}", highlight=False)
    return store, outcome


@app.command()
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep JSON file.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Results folder [default: results/<name>/].")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 2,
    executor: Annotated[
        str, typer.Option(help="'process' (local worker processes) or 'dask' (LocalCluster).")
    ] = "process",
    scheduler: Annotated[
        str | None, typer.Option(help="Address of a running Dask scheduler (tcp://HOST:PORT).")
    ] = None,
) -> None:
    """Run every point of a sweep (resumable), store results and write summary.csv."""
    if executor not in ("process", "dask"):
        _fail(f"--executor: expected 'process' or 'dask', got '{executor}'")
    _, outcome = _run_sweep_file(sweep_file, output, workers, executor, scheduler)
    if not outcome.ok:
        raise typer.Exit(1)


def main() -> None:
    """Entry point for `python -m gpusim`."""
    app()


if __name__ == "__main__":
    main()
