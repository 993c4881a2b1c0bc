"""Atomic file writes: a reader never sees a half-written result, and files get the usual
permissions (``0666`` less the umask, as ``open`` gives), not ``mkstemp``'s private ``0600``.

:func:`atomic_path` is the one helper every writer uses (text, JSON, Parquet, PDF).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; on a normal exit it is given mode
    ``0666 & ~umask`` and renamed onto ``path``, on an exception it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, flushed to disk before the rename."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def write_json_atomic(path: Path, data: Any, *, ascii_only: bool = True) -> None:
    """Write ``data`` as indented JSON, atomically; ``ascii_only=False`` keeps non-ASCII text
    (e.g. ``§`` in sources) as UTF-8 instead of ``\\u`` escapes."""
    text = json.dumps(data, indent=2, sort_keys=False, ensure_ascii=ascii_only)
    write_text_atomic(path, text + "\n")
