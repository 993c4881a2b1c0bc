"""User-facing input errors: one line naming the file, the JSON path and the reason."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def json_path(loc: Iterable[int | str]) -> str:
    """Render a location tuple (as pydantic reports it) as a JSON path like ``$.links[3].bw``."""
    out = "$"
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}"
    return out


class SpecError(Exception):
    """Bad input: a file that is missing, malformed or fails validation.

    ``str(err)`` is the one-line message the CLI prints: ``FILE: JSON_PATH: REASON``.
    """

    def __init__(self, file: str | Path | None, path: str, reason: str) -> None:
        self.file = str(file) if file is not None else "<inline>"
        self.path = path
        self.reason = " ".join(reason.split())  # always one line
        super().__init__(f"{self.file}: {self.path}: {self.reason}")


class SimulationError(Exception):
    """A scenario that validated but cannot be simulated (e.g. no route between two devices)."""


class UsageError(Exception):
    """A command used in a way that cannot work (e.g. an optional dependency is missing)."""
