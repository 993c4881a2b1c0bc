"""Commands on one file: run a scenario, check spec files, write schemas, list shipped data."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from gpusim.cli.common import (
    DEFAULT_LIMITS,
    MaxEvents,
    MaxMemoryGB,
    app,
    check_output_folder,
    err,
    guard,
    guard_simulation,
    out,
)
from gpusim.cli.tables import Cell, Column, fitted_table, split_tables
from gpusim.fidelity import Fidelity
from gpusim.run_limits import Limits

if TYPE_CHECKING:
    from gpusim.result import Result

# The model (pydantic specs, numpy, SimPy) is imported by the commands that use it, so that
# `gpusim --help` and `gpusim list` start at once.


def _print_result(result: Result) -> None:
    from gpusim.report.format import format_metric

    title = f"{result.scenario} ({result.fidelity}, seed {result.seed})"
    columns = (Column("metric", wrap=True, keep=2), Column("value", "right", keep=2))
    rows: list[list[Cell]] = [[n, format_metric(n, v)] for n, v in result.metrics.items()]
    out.print(fitted_table(title, columns, rows, out.width))
    if result.per_gpu:
        names = sorted({k for row in result.per_gpu.values() for k in row})
        per_columns = [Column("gpu"), *(Column(c, "right") for c in names)]
        per_rows: list[list[Cell]] = [
            [gpu, *(format_metric(c, row[c]) if c in row else "" for c in names)]
            for gpu, row in result.per_gpu.items()
        ]
        for table in split_tables("per GPU", per_columns, per_rows, out.width):
            out.print(table)
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
    max_events: MaxEvents = DEFAULT_LIMITS.max_events,
    max_memory_gb: MaxMemoryGB = DEFAULT_LIMITS.max_memory_GB,
) -> None:
    """Simulate one scenario, print a summary and write summary.json (the result: the same bytes
    on every run), timing.json (wall time) and, when traced, trace.json."""
    from gpusim.export.files import write_json_atomic
    from gpusim.export.perfetto import chrome_trace
    from gpusim.limits import check_limits
    from gpusim.simulate import simulate
    from gpusim.spec.loading import load_scenario
    from gpusim.spec.overrides import parse_assignment

    overrides: dict[str, Any] = dict(guard(lambda: [parse_assignment(s) for s in set_ or []]))
    if fidelity is not None:
        overrides["options.fidelity"] = fidelity.value
    if trace is not None:
        overrides["options.trace"] = trace
    resolved = guard(lambda: load_scenario(scenario, overrides))
    limits = Limits(max_events=max_events, max_memory_GB=max_memory_gb)
    guard(lambda: check_limits(resolved, scenario, limits))
    folder = output if output is not None else Path("results") / resolved.name
    check_output_folder(folder)
    result = guard_simulation(lambda: simulate(resolved), scenario)
    summary = {**result.summary(), "overrides": overrides}
    if output is None:
        _say_if_replacing(folder / "summary.json", result.scenario_hash)
    guard(lambda: write_json_atomic(folder / "summary.json", summary))
    guard(lambda: write_json_atomic(folder / "timing.json", result.timing()))
    _print_result(result)
    out.print(f"wrote {folder / 'summary.json'}")
    if result.trace is not None:
        doc = chrome_trace(result.trace, resolved.name)
        guard(lambda: write_json_atomic(folder / "trace.json", doc))
        out.print(f"wrote {folder / 'trace.json'} (open in https://ui.perfetto.dev)")


def _say_if_replacing(summary: Path, scenario_hash: str) -> None:
    """Warn (stderr) when the default folder holds the result of a different scenario (another
    file of the same name, or other ``--set`` overrides) that this run replaces."""
    try:
        previous = json.loads(summary.read_text(encoding="utf-8")).get("scenario_hash")
    except (OSError, ValueError, AttributeError):
        return
    if previous != scenario_hash:
        err.print(
            f"note: replacing {summary} (a run of another scenario, hash {previous}); "
            "give -o to keep both",
            highlight=False,
            soft_wrap=True,
        )


def _check_one(path: Path) -> str:
    from gpusim.calibrate.document import load_document
    from gpusim.errors import SpecError
    from gpusim.limits import check_limits
    from gpusim.spec.detect import detect_kind
    from gpusim.spec.hardware import GPUSpec, HostCPUSpec, MemoryTierSpec
    from gpusim.spec.loading import (
        load_model,
        load_profile,
        load_scenario,
        load_topology,
        load_workload,
    )
    from gpusim.spec.model_zoo import TransformerModel
    from gpusim.spec.provenance import read_json
    from gpusim.spec.resources import ResourceReport
    from gpusim.sweep import check_metrics, load_sweep, validate_points
    from gpusim.validate import check_case_scenarios, load_ledger

    raw = read_json(path)
    kind = detect_kind(raw)
    if kind == "sweep":
        spec = load_sweep(path)
        count = validate_points(spec, path, DEFAULT_LIMITS)
        check_metrics(spec, path)
        return f"sweep '{spec.name}' ({count} valid points)"
    if kind == "ledger":
        ledger = load_ledger(path)
        check_case_scenarios(ledger, path)
        return f"validation ledger '{ledger.name}' ({len(ledger.cases)} cases)"
    if kind == "scenario":
        scenario = load_scenario(path)
        check_limits(scenario, path, DEFAULT_LIMITS)
        return f"scenario '{scenario.name}'"
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
    if kind == "model":
        model = load_model(TransformerModel, path)
        return f"model '{model.name}' ({model.parameters() / 1e9:.3g}B parameters)"
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
    """Validate spec files: scenarios, sweeps, ledgers, specs, measurements, resource reports."""
    for path in files:
        what = guard(partial(_check_one, path))
        out.print(f"ok: {path}: {what}", highlight=False)


@app.command()
def schema(
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder to write to.")] = Path(
        "schemas"
    ),
) -> None:
    """Write the JSON Schemas of every kind of spec file."""
    from gpusim.export.files import write_json_atomic
    from gpusim.spec.schema import all_schemas

    check_output_folder(output)
    for name, body in all_schemas().items():
        guard(partial(write_json_atomic, output / name, body))
        out.print(f"wrote {output / name}")


@app.command("list")
def list_() -> None:
    """Show the shipped topologies, workloads, calibration profiles and models."""
    from gpusim.spec.refs import SHIPPED_DIRS, data_root, shipped_names

    root = data_root()
    for kind in ("scenario", "topology", "profile", "model"):
        rows: list[list[Cell]] = []
        for name in shipped_names(kind):
            try:
                raw = json.loads((root / SHIPPED_DIRS[kind] / f"{name}.json").read_text())
            except (OSError, json.JSONDecodeError):
                raw = {}
            desc = raw.get("description", "") if isinstance(raw, dict) else ""
            rows.append([name, Text(str(desc))])
        columns = (Column("name", keep=2), Column("description", wrap=True, keep=1))
        table = fitted_table(f"{kind} ({SHIPPED_DIRS[kind]}/)", columns, rows, out.width)
        out.print(table)
