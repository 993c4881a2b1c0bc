"""What every command shares: the typer app, the consoles, and one way to fail (a single
line on stderr and an exit code, never a traceback)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from gpusim.errors import SimulationError, SpecError, UsageError

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
    """Run ``fn``; input and simulation errors become one line on stderr and exit code 2."""
    try:
        return fn()
    except SpecError as exc:
        fail(str(exc))
    except SimulationError as exc:
        fail(f"cannot simulate: {exc}")
    except UsageError as exc:
        fail(str(exc))
