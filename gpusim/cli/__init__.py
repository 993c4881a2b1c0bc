"""The `gpusim` command line: the only package that prints.

Commands live in modules by what they work on (:mod:`single`, :mod:`sweeps`, :mod:`calibrate`);
importing them registers them on :data:`app`.
"""

from __future__ import annotations

from gpusim.cli import calibrate, single, sweeps
from gpusim.cli.common import app

__all__ = ["app", "calibrate", "main", "single", "sweeps"]


def main() -> None:
    """Entry point for `python -m gpusim` and the `gpusim` script."""
    app()
