"""The engine's compiled build: which modules mypyc compiles at install, and when their source runs.

``pip install`` compiles :data:`COMPILED_MODULES` to C extensions with mypyc where it can (setup.py;
without a C compiler the install goes on without them). Compiled or not, a module computes the
same floats (the same IEEE double operations in the same order; CI checks the golden snapshots
with the compiled build), so the choice decides only the speed.

Python imports an extension before a source file of the same name, so an editable install would
run a compiled module after its source was edited. The finder :func:`install` adds to
``sys.meta_path`` prevents that: the source runs instead wherever

- ``GPUSIM_PURE_PYTHON`` is set (not ``0``): the test suite sets it, to trace the source;
- the source no longer matches the SHA-256 that setup.py stamped beside the extension when it
  compiled it (the module was edited since; reinstall to recompile).

This module imports nothing from gpusim: setup.py loads it on its own to read the list.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

COMPILED_MODULES = ("gpusim.engine.maxmin", "gpusim.engine.fluid")
"""The engine's hot modules, compiled as they are (mypy-strict code needs no change)."""
PURE_ENV = "GPUSIM_PURE_PYTHON"
STAMP_SUFFIX = ".mypyc-source.sha256"
_ROOT = Path(__file__).resolve().parent.parent
"""The folder holding the gpusim package."""


def source_path(module: str, root: Path = _ROOT) -> Path:
    """The source file of ``module`` (a dotted name under gpusim)."""
    return root.joinpath(*module.split(".")).with_suffix(".py")


def stamp_path(module: str, root: Path = _ROOT) -> Path:
    """Where setup.py writes the SHA-256 of the source it compiled ``module`` from."""
    source = source_path(module, root)
    return source.with_name(source.stem + STAMP_SUFFIX)


def source_sha256(path: Path) -> str:
    """The hex SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def has_extension(module: str, root: Path = _ROOT) -> bool:
    """Whether a compiled extension of ``module`` lies beside its source."""
    source = source_path(module, root)
    return any(
        source.with_name(source.stem + suffix).exists()
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
    )


def source_reason(module: str, root: Path = _ROOT) -> str | None:
    """Why ``module`` must run from its source although compiled, or ``None`` (not compiled, or
    the extension was compiled from the source as it is)."""
    if os.environ.get(PURE_ENV, "0") not in ("", "0"):
        return f"{PURE_ENV} is set"
    if not has_extension(module, root):
        return None
    source, stamp = source_path(module, root), stamp_path(module, root)
    if not stamp.exists() or stamp.read_text().strip() != source_sha256(source):
        return f"{source.name} changed since it was compiled (reinstall to recompile)"
    return None


class SourceFirst:
    """A ``sys.meta_path`` finder that loads a compiled module from its source where
    :func:`source_reason` gives a reason (kept in :attr:`reasons`)."""

    def __init__(self, modules: Sequence[str] = COMPILED_MODULES, root: Path = _ROOT) -> None:
        self.modules = frozenset(modules)
        self.root = root
        self.reasons: dict[str, str] = {}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        """The source's spec where the source must run; ``None`` leaves the import as it is."""
        if fullname not in self.modules:
            return None
        reason = source_reason(fullname, self.root)
        if reason is None:
            return None
        self.reasons[fullname] = reason
        return importlib.util.spec_from_file_location(fullname, source_path(fullname, self.root))


_FINDER = SourceFirst()


def install() -> None:
    """Put the source-first finder in front of the import system (once)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def is_compiled(module: ModuleType) -> bool:
    """Whether ``module`` was loaded from a compiled extension."""
    return any(str(module.__file__).endswith(s) for s in importlib.machinery.EXTENSION_SUFFIXES)


def engine_build() -> str:
    """One line saying how the engine runs here: which modules are compiled, and why any runs
    from its source (imports the modules)."""
    modules = [importlib.import_module(m) for m in COMPILED_MODULES]
    names = [m.rsplit(".", 1)[1] for m in COMPILED_MODULES]
    compiled = [n for n, m in zip(names, modules, strict=True) if is_compiled(m)]
    if len(compiled) == len(names):
        return f"compiled (mypyc): {', '.join(compiled)}"
    reasons = sorted({_FINDER.reasons[m] for m in COMPILED_MODULES if m in _FINDER.reasons})
    why = "; ".join(reasons) if reasons else "not compiled at install (no C compiler or mypyc)"
    head = f"compiled (mypyc): {', '.join(compiled)}; the rest" if compiled else "pure Python"
    return f"{head} from source: {why}"


install()  # on import: gpusim/__init__.py imports this module before anything else
