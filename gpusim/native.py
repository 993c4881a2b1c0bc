"""The engine's compiled build: which modules mypyc compiles at install, and when their source runs.

``pip install`` compiles :data:`COMPILED_MODULES` to C extensions with mypyc where it can, and
builds the hand-written C extensions of :data:`C_MODULES`, each the twin of code in a module of
the first list (setup.py; without a C compiler the install goes on without them). Compiled or
not, the engine computes the same floats (the same IEEE double operations in the same order;
CI checks the golden snapshots with the compiled build, and tests compare each C twin with its
Python), so the choice decides only the speed.

Python imports an extension before a source file of the same name, so an editable install would
run a compiled module after its source was edited. The finder :func:`install` adds to
``sys.meta_path`` prevents that: every compiled module runs from its source (all or none: they
use each other's compiled classes) wherever

- ``GPUSIM_PURE_PYTHON`` is set (not ``0``): the test suite sets it, to trace the source;
- one of them, or of the C modules, has no extension (a build that failed) or its source no
  longer matches the SHA-256 that setup.py stamped beside its extension when it compiled it
  (the module was edited since; reinstall to recompile).

Where they run from source, so does every C twin's Python (:func:`c_module` gives ``None``).

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

COMPILED_MODULES = (
    "gpusim.engine.sim",
    "gpusim.engine.maxmin",
    "gpusim.engine.fluid",
    "gpusim.execution.persistent",
    "gpusim.hardware.gpu",
    "gpusim.hardware.host",
    "gpusim.execution.launch",
    "gpusim.execution.runtime",
)
"""The engine's hot modules, compiled as they are (mypy-strict code needs no change). mypyc sees
SimPy through the build's stubs (build_stubs/simpy): a compiled class may subclass only the
SimPy classes they name (the environment and the event classes: Event, Timeout, Process); a
subclass of any other SimPy class must live in a module that is not compiled."""
C_MODULES = ("gpusim.engine._maxmin_c", "gpusim.engine._heap_c")
"""Hand-written C extensions, each the twin of Python code that stays the reference:
``_maxmin_c.c``, the fluid network's max-min solves on C arrays and its class table (the
classes, their clocks and the resources as a settle reads them, with the settle's walk, solves,
re-time, completion index, peaks and ledger, and a settle's general path in one call: the same
floats, the same orders), and
``_heap_c.c``, heapq's heappush and heappop comparing tuples of floats and ints in C
(gpusim/engine/heap.py). They run where the compiled engine runs, and only there: a missing or
stale one (its stamp is the SHA-256 of its ``.c`` source) makes the whole engine run from source,
as a mypyc module does."""
COMPILED_BUILD = (
    "compiled (mypyc): "
    + ", ".join(m.rsplit(".", 1)[1] for m in COMPILED_MODULES)
    + "; C: "
    + ", ".join(m.rsplit(".", 1)[1] for m in C_MODULES)
)
"""What :func:`engine_build` says where every module of both lists runs compiled."""
PURE_ENV = "GPUSIM_PURE_PYTHON"
STAMP_SUFFIX = ".source.sha256"
_ROOT = Path(__file__).resolve().parent.parent
"""The folder holding the gpusim package."""


def source_path(module: str, root: Path = _ROOT) -> Path:
    """The source file of ``module`` (a dotted name under gpusim): ``.c`` for one of
    :data:`C_MODULES`, ``.py`` otherwise."""
    return root.joinpath(*module.split(".")).with_suffix(".c" if module in C_MODULES else ".py")


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


def pure_requested() -> bool:
    """Whether ``GPUSIM_PURE_PYTHON`` asks for the source (set, and not ``0``)."""
    return os.environ.get(PURE_ENV, "0") not in ("", "0")


def source_reason(
    modules: Sequence[str] = COMPILED_MODULES + C_MODULES, root: Path = _ROOT
) -> str | None:
    """Why ``modules`` must run from their source, or ``None`` where each is compiled from its
    source as it is. All or none: a compiled module takes only the compiled classes of the
    others (it refuses an instance of their source's class)."""
    if pure_requested():
        return f"{PURE_ENV} is set"
    for module in modules:
        source, stamp = source_path(module, root), stamp_path(module, root)
        if not has_extension(module, root):
            return f"{source.name} was not compiled at install (no C compiler or mypyc)"
        if not stamp.exists() or stamp.read_text().strip() != source_sha256(source):
            return f"{source.name} changed since it was compiled (reinstall to recompile)"
    return None


class SourceFirst:
    """A ``sys.meta_path`` finder that loads the compiled modules from their source where
    :func:`source_reason` gives a reason (decided at the first import of one of them and kept
    in :attr:`reason`)."""

    def __init__(
        self,
        modules: Sequence[str] = COMPILED_MODULES,
        root: Path = _ROOT,
        c_modules: Sequence[str] = C_MODULES,
    ) -> None:
        self.modules = tuple(modules)
        self.c_modules = tuple(c_modules)
        self.root = root
        self.decided = False
        self.reason: str | None = None

    def decide(self) -> str | None:
        """:attr:`reason`, decided at the first call (:func:`source_reason` over the mypyc and
        the C modules)."""
        if not self.decided:
            self.reason = source_reason(self.modules + self.c_modules, self.root)
            self.decided = True
        return self.reason

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        """The source's spec where the source must run; ``None`` leaves the import as it is."""
        if fullname not in self.modules:
            return None
        if self.decide() is None:
            return None
        return importlib.util.spec_from_file_location(fullname, source_path(fullname, self.root))


_FINDER = SourceFirst()


def install() -> None:
    """Put the source-first finder in front of the import system (once; gpusim/__init__.py
    does, so it is in place before any module of the list is imported)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def is_compiled(module: ModuleType) -> bool:
    """Whether ``module`` was loaded from a compiled extension."""
    return any(str(module.__file__).endswith(s) for s in importlib.machinery.EXTENSION_SUFFIXES)


def c_module(module: str) -> ModuleType | None:
    """The C extension ``module`` (one of :data:`C_MODULES`) where the compiled engine runs;
    ``None`` where the engine runs from source (its Python twin then runs instead)."""
    if _FINDER.decide() is not None:
        return None
    return importlib.import_module(module)


def engine_build() -> str:
    """One line saying how the engine runs here: compiled, or from source and why (imports the
    compiled modules)."""
    modules = [importlib.import_module(m) for m in COMPILED_MODULES]
    if all(is_compiled(m) for m in modules) and all(c_module(m) for m in C_MODULES):
        return COMPILED_BUILD
    return f"pure Python from source: {_FINDER.reason}"
