"""Atomic file writes: a reader never sees a half-written result."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any, *, ascii_only: bool = True) -> None:
    """Write ``data`` as indented JSON, atomically; ``ascii_only=False`` keeps non-ASCII text
    (e.g. ``§`` in sources) as UTF-8 instead of ``\\u`` escapes."""
    text = json.dumps(data, indent=2, sort_keys=False, ensure_ascii=ascii_only)
    write_text_atomic(path, text + "\n")
