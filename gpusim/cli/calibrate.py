"""`gpusim calibrate`: build and run kernels_ref, fit profiles from measurements, show them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from gpusim.cli.common import app, check_output_folder, err, fail, guard, out, print_error
from gpusim.cli.tables import Cell, Column, fitted_table
from gpusim.errors import UsageError

if TYPE_CHECKING:
    from gpusim.calibrate.nameplates import Nameplates
    from gpusim.calibrate.run import ProgramResult

# The model, the calibration code and pydantic are imported by the commands that use them, so
# that `gpusim --help` starts at once.

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
        done = guard(
            lambda: build(source, folder, arch or DEFAULT_ARCHITECTURES, on_line=echo, jobs=jobs)
        )
    except BuildError as exc:
        fail(str(exc), EXIT_FAILED)
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
    from gpusim.calibrate.run import default_output, find_bin_dir, run_all, select_programs

    where = guard(lambda: find_bin_dir(bin_dir))
    programs, missing = guard(lambda: select_programs(where, program))
    folder = output if output is not None else default_output()
    check_output_folder(folder)
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

    summary = guard(
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
        print_error(f"{r.program}: {r.outcome.value}: {r.message}")
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
        fail("some programs measured and some reported no_device", EXIT_FAILED)
    out.print(
        f"measured {len(summary.results)} programs", highlight=False, markup=False, soft_wrap=True
    )


# ---- calibrate fit / show: measurements or published data -> calibration profiles ----------

SOURCE_WIDTH = 70
"""Characters of a value's source `calibrate show` prints."""


def _calibration_nameplates(topology: str | None, gpu: str | None) -> Nameplates | None:
    from gpusim.calibrate.nameplates import NameplateError, Nameplates
    from gpusim.spec.hardware import GPUSpec
    from gpusim.spec.loading import load_model, load_topology
    from gpusim.spec.refs import resolve_ref

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
    from gpusim.calibrate.fit import fit_folder
    from gpusim.calibrate.params import flatten, profile_document
    from gpusim.export.files import write_json_atomic

    plates = guard(lambda: _calibration_nameplates(topology, gpu))
    check_output_folder(output.parent)
    report = guard(lambda: fit_folder(folder, plates, profile_id, description))
    document = profile_document(report.profile)
    guard(lambda: write_json_atomic(output, document, ascii_only=False))
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


PROFILE_COLUMNS = (
    Column("parameter", wrap=True, keep=3),
    Column("value", "right", keep=3),
    Column("unit", keep=2),
    Column("±", "right", keep=1),
    Column("source", wrap=True, keep=0),
)
"""``gpusim calibrate show``'s columns; the source is left out when the terminal is too narrow."""


@calibrate_app.command("show")
def calibrate_show(
    profile: Annotated[str, typer.Argument(help="Profile file, or the name of a shipped one.")],
    full: Annotated[bool, typer.Option(help="Print the sources whole.")] = False,
) -> None:
    """Print a calibration profile: every value with its unit, uncertainty and source."""
    from gpusim.calibrate.params import flatten, unit_of
    from gpusim.spec.loading import load_profile
    from gpusim.spec.refs import resolve_ref

    loaded = guard(lambda: load_profile(resolve_ref("profile", profile, Path.cwd(), profile, "$")))
    rows: list[list[Cell]] = []
    for path, value in flatten(loaded).items():
        unc = "" if value.uncertainty is None else f"{value.uncertainty:.3g}"
        source = value.source if full else _short(value.source)
        rows.append([Text(path), f"{value.value:.6g}", unit_of(path), unc, Text(source)])
    table = fitted_table(f"profile {loaded.id}", PROFILE_COLUMNS, rows, out.width)
    out.print(table)
