"""The `gpusim` command line. The only module that prints."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from gpusim.calibrate.document import load_document
from gpusim.calibrate.fit import fit_folder
from gpusim.calibrate.nameplates import NameplateError, Nameplates
from gpusim.calibrate.params import flatten, profile_document, unit_of
from gpusim.errors import SimulationError, SpecError, UsageError
from gpusim.export.files import write_json_atomic, write_text_atomic
from gpusim.export.perfetto import chrome_trace, events_from_chrome
from gpusim.report import write_report
from gpusim.report.figures import comparison_bars
from gpusim.report.html import figure_svg
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
from gpusim.spec.refs import SHIPPED_DIRS, data_root, resolve_ref, shipped_names
from gpusim.spec.resources import ResourceReport
from gpusim.spec.scenario import Fidelity
from gpusim.spec.schema import all_schemas
from gpusim.sweep import (
    ResultStore,
    SweepOutcome,
    SweepProgress,
    check_structure,
    count_points,
    expand,
    iter_points,
    load_sweep,
    make_executor,
    run_sweep,
)
from gpusim.sweep.executors import ExecutorKind
from gpusim.validate import load_ledger, validate_ledger
from gpusim.validate import write_report as write_validation

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


def _error(message: str) -> None:
    """One error line on stderr; ``message`` is taken literally (sources and logs hold
    brackets, never markup)."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """:func:`_error` and exit ``code``."""
    _error(message)
    raise typer.Exit(code)


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
    if name.endswith("_per_s"):
        return f"{value:.4g} /s"
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
        typer.Option("-o", "--output", help="Output folder \\[default: results/<name>/]."),
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
    if kind == "sweep":
        spec = load_sweep(path)
        return f"sweep '{spec.name}' ({len(expand(spec, path))} valid points)"
    if kind == "ledger":
        return f"validation ledger '{load_ledger(path).name}'"
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
    if kind == "measurements":
        doc = load_document(path)
        return (
            f"{doc.program} measurements, status {doc.status.value}, {len(doc.measurements)} points"
        )
    if kind == "resources":
        report = load_model(ResourceReport, path)
        archs = ", ".join(sorted({k.arch for k in report.kernels}))
        return f"resource report: {len(report.kernels)} kernels ({archs})"
    if kind == "run":
        return "a `gpusim calibrate run` summary (not a spec; nothing to check)"
    raise SpecError(path, "$", "cannot tell what kind of gpusim file this is")


@app.command()
def check(files: Annotated[list[Path], typer.Argument(help="Spec files to validate.")]) -> None:
    """Validate scenario, sweep, ledger, topology, workload, profile or component files, and
    measurement documents and resource reports."""
    for path in files:
        what = _guard(partial(_check_one, path))
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
    _guard(lambda: check_structure(sweep, sweep_file))
    total = count_points(sweep)
    store = ResultStore(output if output is not None else Path("results") / sweep.name)
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
        with _guard(lambda: make_executor(kind, workers, scheduler)) as pool:
            outcome = _guard(
                lambda: run_sweep(
                    iter_points(sweep, sweep_file),
                    store,
                    pool,
                    total=total,
                    manifest_fields=manifest_fields,
                    on_progress=show,
                )
            )
    rows = store.rows()
    csv_path = store.write_summary_csv(rows)
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
) -> None:
    """Run every point of a sweep (resumable), store results and write summary.csv."""
    if executor not in ("process", "dask"):
        _fail(f"--executor: expected 'process' or 'dask', got '{executor}'")
    _, outcome = _run_sweep_file(sweep_file, output, workers, executor, scheduler)
    if not outcome.ok:
        raise typer.Exit(1)


def _load_trace(
    store: ResultStore, rows: list[dict[str, Any]], point: int | None
) -> dict[int, Any]:
    """The stored trace of ``point``, or of the first point that has one (only one is plotted)."""
    candidates = [r for r in rows if point is None or r["point"] == point]
    for row in candidates:
        path = store.trace_path(row["scenario_hash"])
        if path is not None:
            return {row["point"]: events_from_chrome(json.loads(path.read_text(encoding="utf-8")))}
    return {}


def _write_sweep_report(
    store: ResultStore,
    target: Path,
    baseline: str | None,
    gantt_point: int | None,
    fmt: str,
) -> None:
    try:
        manifest = store.read_manifest()
    except FileNotFoundError:
        _fail(f"{store.root}: $: not a sweep results folder (no sweep.json)")
    rows = store.rows()
    chosen = baseline if baseline is not None else manifest.get("baseline")
    traces = _load_trace(store, rows, gantt_point)
    report_format: Literal["html", "pdf"] = "pdf" if fmt == "pdf" else "html"
    try:
        titles = write_report(
            target,
            manifest,
            rows,
            traces,
            baseline=chosen,
            gantt_point=gantt_point,
            fmt=report_format,
        )
    except ValueError as exc:
        _fail(f"{store.root}: {exc}")
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
) -> None:
    """Write a self-contained HTML (or PDF) report of a sweep's results."""
    if format_ not in ("html", "pdf"):
        _fail(f"--format: expected 'html' or 'pdf', got '{format_}'")
    target = output if output is not None else results / f"report.{format_}"
    _write_sweep_report(ResultStore(results), target, baseline, gantt_point, format_)


@app.command()
def compare(
    scenario_a: Annotated[Path, typer.Argument(help="First scenario (the reference).")],
    scenario_b: Annotated[Path, typer.Argument(help="Second scenario.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Folder for compare.json and compare.svg.")
    ] = None,
) -> None:
    """Run two scenarios and report their metrics side by side (B/A ratios)."""
    res_a = _guard(lambda: simulate(load_scenario(scenario_a, {"options.trace": False})))
    res_b = _guard(lambda: simulate(load_scenario(scenario_b, {"options.trace": False})))
    table = Table(title=f"A = {res_a.scenario}   B = {res_b.scenario}")
    for col in ("metric", "A", "B", "B/A"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    rows = []
    for name in [m for m in res_a.metrics if m in res_b.metrics]:
        a, b = res_a.metrics[name], res_b.metrics[name]
        ratio = b / a if a else float("nan")
        rows.append({"metric": name, "a": a, "b": b, "ratio": ratio})
        table.add_row(name, _format_value(name, a), _format_value(name, b), f"{ratio:.3g}")
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
    write_json_atomic(folder / "compare.json", doc)
    fig = comparison_bars(res_a.metrics, res_b.metrics, res_a.scenario, res_b.scenario)
    write_text_atomic(folder / "compare.svg", figure_svg(fig))
    out.print(f"wrote {folder / 'compare.json'} and {folder / 'compare.svg'}", highlight=False)


@app.command()
def validate(
    ledger_file: Annotated[Path, typer.Argument(help="Validation ledger JSON file.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Folder for the CSV and JSON tables.")
    ] = None,
) -> None:
    """Run every case of a validation ledger and print predicted against published values."""
    ledger = _guard(lambda: load_ledger(ledger_file))
    result = _guard(lambda: validate_ledger(ledger, ledger_file.parent))
    table = Table(title=f"validation: {ledger.name}")
    for col in (
        "case",
        "kind",
        "source",
        "metric",
        "expected",
        "predicted",
        "error %",
        "tol %",
        "ok",
    ):
        table.add_column(
            col, justify="right" if col in ("expected", "predicted", "error %", "tol %") else "left"
        )
    for case in result.cases:
        source = case.source.split(",")[0][:32]
        if case.error is not None:
            table.add_row(
                case.id,
                case.kind,
                case.source,
                case.metric,
                f"{case.expected:.4g} {case.unit}",
                "-",
                "-",
                f"{case.tolerance_pct:g}",
                f"[red]error: {case.error}[/]",
            )
            continue
        table.add_row(
            case.id,
            case.kind,
            source,
            case.metric,
            f"{case.expected:.4g} {case.unit}",
            f"{case.predicted:.4g} {case.unit}",
            f"{case.error_pct:+.2f}",
            f"{case.tolerance_pct:g}",
            "yes" if case.within else "[red]no[/]",
        )
    out.print(table)
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
        csv_path, json_path = write_validation(result, output)
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
    failed = False
    for sub, name in DEMO_SWEEPS.items():
        sweep_file = data_root() / SHIPPED_DIRS["scenario"] / name
        folder = output / sub
        store, outcome = _run_sweep_file(sweep_file, folder, workers, "process", None)
        failed = failed or not outcome.ok
        _write_sweep_report(store, folder / "report.html", None, None, "html")
    if failed:
        raise typer.Exit(1)


# -- calibrate: build and run kernels_ref ---------------------------------------------------------
# One block on purpose: `calibrate fit` and `calibrate show` join this sub-app; the imports sit in
# the commands so the block stays self-contained.

calibrate_app = typer.Typer(
    help="Build and run kernels_ref, fit calibration profiles from their measurements or from "
    "published data, and show profiles.",
    no_args_is_help=True,
)
app.add_typer(calibrate_app, name="calibrate")

EXIT_FAILED = 1
EXIT_NO_DEVICE = 3  # every program said this machine has no CUDA device (nothing measured)


@calibrate_app.command(
    "build",
    help="Build kernels_ref from clean and write its ptxas resource report.\n\n"
    "The architectures always reach CMake explicitly; the log streams here and is kept as "
    "BUILD_DIR/build.log; BUILD_DIR/resource_usage.json lists each kernel's registers, shared "
    "memory, stack and spills per architecture.",
)
def calibrate_build(
    source: Annotated[Path, typer.Option(help="The CMake + CUDA project (kernels_ref).")] = Path(
        "kernels_ref"
    ),
    build_dir: Annotated[
        Path | None, typer.Option(help="Build folder \\[default: SOURCE/build].")
    ] = None,
    arch: Annotated[
        list[str] | None,
        typer.Option(help="CUDA architecture, e.g. 80 or 90a (repeatable) \\[default: 80, 90a]."),
    ] = None,
    jobs: Annotated[
        int | None, typer.Option(min=1, help="Parallel compile jobs \\[default: the generator's].")
    ] = None,
) -> None:
    """Build kernels_ref from clean and write its ptxas resource report."""
    from gpusim.calibrate.build import DEFAULT_ARCHITECTURES, BuildError, build

    folder = build_dir if build_dir is not None else source / "build"

    def echo(line: str) -> None:
        out.print(line, markup=False, highlight=False, soft_wrap=True)

    try:
        done = _guard(
            lambda: build(source, folder, arch or DEFAULT_ARCHITECTURES, on_line=echo, jobs=jobs)
        )
    except BuildError as exc:
        _fail(str(exc), EXIT_FAILED)
    kernels = sorted(done.report.kernels, key=lambda k: (k.target or "", k.display_name, k.arch))
    width = max([len("program"), *(len(k.target or "?") for k in kernels)])
    out.print(
        f"{'program':<{width}}  {'arch':<7} {'regs':>5} {'smem B':>8} {'stack B':>8} "
        f"{'spills B':>13}  kernel",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    for k in kernels:
        spills = f"{k.spill_store_bytes}/{k.spill_load_bytes}"
        out.print(
            f"{k.target or '?':<{width}}  {k.arch:<7} {k.registers_per_thread:>5} "
            f"{k.static_shared_mem_bytes:>8} {k.stack_frame_bytes:>8} {spills:>13}  "
            f"{k.display_name}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    for k in kernels:
        if k.spill_store_bytes or k.spill_load_bytes:
            err.print(
                f"warning: {k.display_name} ({k.arch}) spills {k.spill_store_bytes} B stores, "
                f"{k.spill_load_bytes} B loads",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
    out.print(
        f"wrote {done.report_path} ({len(kernels)} kernels, "
        f"{', '.join('sm_' + a for a in done.report.architectures)}; {done.generator}); "
        f"log {done.log_path}; configure {done.configure_s:.1f} s, build {done.build_s:.1f} s",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


@calibrate_app.command(
    "run",
    help="Run the kernels_ref programs and keep their measurement documents.\n\n"
    "Writes PROGRAM.json per valid document and run.json. Exit 0: all measured; 3: no CUDA "
    "device on this machine; 1: a program failed (timed out, crashed, printed no valid "
    "document or reported an error).",
)
def calibrate_run(
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="Results folder \\[default: results/calibration/HOST-DATE/]."
        ),
    ] = None,
    bin_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder of the programs \\[default: $GPUSIM_KERNELS_REF_BIN, else "
            "kernels_ref/build]."
        ),
    ] = None,
    program: Annotated[
        list[str] | None,
        typer.Option(help="Run only this program (repeatable) \\[default: every one built]."),
    ] = None,
    timeout_s: Annotated[float, typer.Option(help="Time limit per program, seconds.")] = 600.0,
    quick: Annotated[
        bool, typer.Option(help="Ask the programs for a quick run (fewer repetitions).")
    ] = False,
) -> None:
    """Run the kernels_ref programs and keep their measurement documents."""
    from gpusim.calibrate.run import (
        ProgramResult,
        default_output,
        find_bin_dir,
        run_all,
        select_programs,
    )

    where = _guard(lambda: find_bin_dir(bin_dir))
    programs, missing = _guard(lambda: select_programs(where, program))
    folder = output if output is not None else default_output()
    if missing:
        out.print(
            f"not built (skipped): {', '.join(missing)}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )

    def show(r: ProgramResult) -> None:
        code = "killed" if r.exit_code is None else f"exit {r.exit_code}"
        note = f": {r.message}" if r.message else ""
        out.print(
            f"{r.program}: {r.outcome.value} ({code}, {r.wall_s:.2f} s){note}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )

    summary = _guard(
        lambda: run_all(
            where,
            programs,
            folder,
            missing=missing,
            timeout_s=timeout_s,
            quick=quick,
            on_result=show,
        )
    )
    out.print(f"wrote {folder / 'run.json'}", highlight=False, markup=False, soft_wrap=True)
    for r in summary.failures:
        _error(f"{r.program}: {r.outcome.value}: {r.message}")
    if summary.failures:
        raise typer.Exit(EXIT_FAILED)
    if summary.all_no_device:
        err.print(
            f"no CUDA device on this machine: {len(summary.results)} programs reported "
            "no_device; nothing measured",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_NO_DEVICE)
    if not summary.ok:
        _fail("some programs measured and some reported no_device", EXIT_FAILED)
    out.print(
        f"measured {len(summary.results)} programs", highlight=False, markup=False, soft_wrap=True
    )


# ---- calibrate fit / show: measurements or published data -> calibration profiles ----------

SOURCE_WIDTH = 70
"""Characters of a value's source `calibrate show` prints."""


def _calibration_nameplates(topology: str | None, gpu: str | None) -> Nameplates | None:
    if topology is not None and gpu is not None:
        raise UsageError("give --topology or --gpu, not both")
    try:
        if topology is not None:
            topo = load_topology(resolve_ref("topology", topology, Path.cwd(), "--topology", "$"))
            return Nameplates.from_topology(topo)
        if gpu is not None:
            path = resolve_ref("gpu", gpu, Path.cwd(), "--gpu", "$")
            return Nameplates.from_gpu(load_model(GPUSpec, path), f"gpu {path.stem}")
    except NameplateError as exc:
        raise UsageError(str(exc)) from None
    return None


@calibrate_app.command("fit")
def calibrate_fit(
    folder: Annotated[Path, typer.Argument(help="Folder of measurement documents (*.json).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Profile file to write.")],
    profile_id: Annotated[
        str | None,
        typer.Option("--id", help="Profile id \\[default: the assumptions document's, else DIR]."),
    ] = None,
    description: Annotated[
        str | None,
        typer.Option(help="Profile description \\[default: the assumptions document's]."),
    ] = None,
    topology: Annotated[
        str | None,
        typer.Option(help="Topology (name or path) whose GPU and links give the nameplates."),
    ] = None,
    gpu: Annotated[
        str | None,
        typer.Option(
            help="GPU component (name or path) for nameplates, when there is no topology."
        ),
    ] = None,
) -> None:
    """Fit a calibration profile to the documents in FOLDER and write it (only if the fit works)."""
    plates = _guard(lambda: _calibration_nameplates(topology, gpu))
    report = _guard(lambda: fit_folder(folder, plates, profile_id, description))
    write_json_atomic(output, profile_document(report.profile), ascii_only=False)
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    reasons: dict[str, int] = {}
    for point in report.unused:
        key = f"{point.where.measurement.name}: {point.reason}"
        reasons[key] = reasons.get(key, 0) + 1
    for key, count in reasons.items():
        out.print(f"not used ({count}): {key}", highlight=False, soft_wrap=True)
    skipped = f", {report.no_device} no_device document(s) skipped" if report.no_device else ""
    fitted = len(flatten(report.profile)) - report.given
    out.print(
        f"{fitted} values fitted from {report.points} measurements in {report.documents} "
        f"document(s), {report.given} given{skipped}; wrote {output}",
        highlight=False,
        soft_wrap=True,
    )


def _short(source: str, width: int = SOURCE_WIDTH) -> str:
    """The start of a source, cut at a word boundary."""
    text = " ".join(source.split())
    if len(text) <= width:
        return text
    cut = text.rfind(" ", 0, width - 1)
    return text[: cut if cut > width // 2 else width - 1] + "…"


@calibrate_app.command("show")
def calibrate_show(
    profile: Annotated[str, typer.Argument(help="Profile file, or the name of a shipped one.")],
    full: Annotated[bool, typer.Option(help="Print the sources whole.")] = False,
) -> None:
    """Print a calibration profile: every value with its unit, uncertainty and source."""
    loaded = _guard(lambda: load_profile(resolve_ref("profile", profile, Path.cwd(), profile, "$")))
    table = Table(title=f"profile {loaded.id}")
    for col in ("parameter", "value", "unit", "±", "source"):
        table.add_column(col, justify="right" if col in ("value", "±") else "left")
    for path, value in flatten(loaded).items():
        unc = "" if value.uncertainty is None else f"{value.uncertainty:.3g}"
        source = value.source if full else _short(value.source)
        table.add_row(path, f"{value.value:.6g}", unit_of(path), unc, Text(source))
    out.print(table)


def main() -> None:
    """Entry point for `python -m gpusim`."""
    app()


if __name__ == "__main__":
    main()
