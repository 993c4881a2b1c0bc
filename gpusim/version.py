"""The installed gpusim version and, when available, the git revision of the source tree."""

from __future__ import annotations

import subprocess
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:
    __version__ = version("gpusim")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"


@cache
def git_revision() -> str:
    """The commit of the gpusim source tree (suffixed '-dirty' when modified), or '' if unknown."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return rev
