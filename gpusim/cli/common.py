"""What every command shares: the typer app, the consoles, and one way to fail (a single
line on stderr and an exit code, never a traceback)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from gpusim.errors import SimulationError, SpecError, UsageError
from gpusim.run_limits import Limits

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


def print_error(message: str) -> None:
    """One error line on stderr; ``message`` is taken literally (sources and logs hold
    brackets, never markup)."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """:func:`_error` and exit ``code``."""
    print_error(message)
    raise typer.Exit(code)


def guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; input and simulation errors, and files that cannot be read or written,
    become one line on stderr and exit code 2."""
    try:
        return fn()
    except SpecError as exc:
        fail(str(exc))
    except SimulationError as exc:
        fail(f"cannot simulate: {exc}")
    except UsageError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or '?'}: $: {exc.strerror or exc}")


def guard_simulation(fn: Callable[[], T], file: Path) -> T:
    """Run ``fn``, which simulates the scenario of ``file`` (already validated): any failure is
    one line naming that file, never a traceback. An error the checks did not catch is still
    the input's doing (a size or combination the model cannot handle)."""
    try:
        return fn()
    except (SpecError, UsageError) as exc:
        fail(str(exc))
    except SimulationError as exc:
        fail(f"{file}: $: cannot simulate: {exc}")
    except MemoryError:
        fail(f"{file}: $: cannot simulate: out of memory (is the scenario too big?)")
    except Exception as exc:  # the last line of defence against a traceback
        fail(f"{file}: $: cannot simulate: {type(exc).__name__}: {exc}")


def check_output_folder(folder: Path, option: str = "-o") -> None:
    """Refuse, before anything runs, an output folder that cannot be created or written: a
    file in its place or an unwritable parent (one line naming the folder and the option)."""
    probe = folder
    while not probe.exists():
        if probe.is_symlink():
            fail(f"{option} {folder}: {probe} is a dangling link")
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        fail(f"{option} {folder}: {probe} exists and is not a folder")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        fail(f"{option} {folder}: {probe} is not writable")


MaxEvents = Annotated[
    float,
    typer.Option(
        "--max-events",
        min=1,
        help="Refuse scenarios estimated to need more DES events (flows, kernels, tasks, router "
        "draws) than this.",
    ),
]
MaxMemoryGB = Annotated[
    float,
    typer.Option(
        "--max-memory-GB",
        min=0.001,
        help="Refuse scenarios estimated to need more host memory (GB) than this.",
    ),
]
MaxPoints = Annotated[
    int, typer.Option("--max-points", min=1, help="Refuse sweeps of more points than this.")
]
DEFAULT_LIMITS = Limits()
