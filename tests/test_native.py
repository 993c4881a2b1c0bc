"""The compiled engine (gpusim/native.py, setup.py): where a compiled module's source runs instead,
and that the compiled build computes exactly what the source computes."""

from __future__ import annotations

import ast
import heapq
import importlib
import importlib.machinery
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import require_built
from hypothesis import assume, given
from hypothesis import strategies as st

from gpusim import native

ROOT = Path(__file__).resolve().parents[1]
EXTENSION = importlib.machinery.EXTENSION_SUFFIXES[0]


MODULES = ["fakepkg.hot", "fakepkg.cold"]


def _package(tmp_path: Path, stamped: bool, extension: bool = True) -> Path:
    """A package ``fakepkg`` with modules ``hot`` and ``cold`` whose sources set ``FROM =
    "source"``, each beside an "extension" that is not one (importing it fails) and, with
    ``stamped``, the stamp of its source as it is."""
    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for module in MODULES:
        source = native.source_path(module, tmp_path)
        source.write_text('FROM = "source"\n')
        if extension:
            (pkg / f"{source.stem}{EXTENSION}").write_bytes(b"not a shared object")
        if stamped:
            native.stamp_path(module, tmp_path).write_text(native.source_sha256(source) + "\n")
    return tmp_path


def test_current_stamps_keep_the_extensions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(native.PURE_ENV, raising=False)
    root = _package(tmp_path, stamped=True)
    assert native.source_reason(MODULES, root) is None
    monkeypatch.setenv(native.PURE_ENV, "0")  # "0" does not ask for the source
    assert native.source_reason(MODULES, root) is None


def test_without_extensions_the_sources_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(native.PURE_ENV, raising=False)
    root = _package(tmp_path, stamped=False, extension=False)
    reason = "hot.py was not compiled at install (no C compiler or mypyc)"
    assert native.source_reason(MODULES, root) == reason


def test_the_environment_asks_for_the_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _package(tmp_path, stamped=True)
    monkeypatch.setenv(native.PURE_ENV, "1")
    assert native.source_reason(MODULES, root) == f"{native.PURE_ENV} is set"


@pytest.mark.parametrize("stamp", [None, "0" * 64])
def test_one_edited_or_unstamped_module_runs_them_all_from_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stamp: str | None
) -> None:
    """The finder loads every listed module from its source where one extension is stale (a
    compiled module would refuse the other's source classes); the plain import would load the
    extensions (here not loadable: the import would fail)."""
    monkeypatch.delenv(native.PURE_ENV, raising=False)
    root = _package(tmp_path, stamped=True)
    cold_stamp = native.stamp_path("fakepkg.cold", root)
    if stamp is None:
        cold_stamp.unlink()
    else:
        cold_stamp.write_text(stamp)
    reason = "cold.py changed since it was compiled (reinstall to recompile)"
    assert native.source_reason(MODULES, root) == reason
    finder = native.SourceFirst(MODULES, root)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    for name in ("fakepkg", *MODULES):
        monkeypatch.delitem(sys.modules, name, raising=False)
    for module in MODULES:
        assert __import__(module, fromlist=["FROM"]).FROM == "source"
    assert finder.reason == reason
    # without the finder, the import takes the extension (here one that cannot load)
    monkeypatch.delitem(sys.modules, "fakepkg.hot")
    monkeypatch.setattr(sys, "meta_path", [m for m in sys.meta_path if m is not finder])
    with pytest.raises(ImportError):
        __import__("fakepkg.hot")


def test_the_test_suite_runs_the_source() -> None:
    """conftest.py sets GPUSIM_PURE_PYTHON: coverage traces the source, tests patch classes."""
    assert native.engine_build().startswith("pure Python from source")
    assert native.c_module("gpusim.engine._maxmin_c") is None  # maxmin.py's own solve runs
    from gpusim.engine import fluid, maxmin

    assert maxmin._C_TWIN is None
    assert fluid._C_CLASS_TABLE is None


def test_an_edited_c_twin_runs_the_engine_from_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A C module's stamp is the SHA-256 of its ``.c`` source: edited since the build, the
    whole engine runs from source (its Python twin included), as for a mypyc module."""
    monkeypatch.delenv(native.PURE_ENV, raising=False)
    monkeypatch.setattr(native, "C_MODULES", ("fakepkg._twin_c",))
    root = _package(tmp_path, stamped=True)
    source = native.source_path("fakepkg._twin_c", root)
    assert source.name == "_twin_c.c"
    source.write_text("/* the twin */\n")
    (source.parent / f"_twin_c{EXTENSION}").write_bytes(b"not a shared object")
    native.stamp_path("fakepkg._twin_c", root).write_text(native.source_sha256(source) + "\n")
    modules = [*MODULES, "fakepkg._twin_c"]
    assert native.source_reason(modules, root) is None
    source.write_text("/* the twin, edited */\n")
    reason = "_twin_c.c changed since it was compiled (reinstall to recompile)"
    assert native.source_reason(modules, root) == reason


_RUN = """
import json, sys
from pathlib import Path
from gpusim import simulate
from gpusim.native import engine_build
from gpusim.spec.loading import load_scenario
out = {"build": engine_build(), "runs": []}
for path, overrides in json.loads(sys.argv[1]):
    result = simulate(load_scenario(Path(path), overrides))
    out["runs"].append({"events": result.events, "metrics": result.metrics})
print(json.dumps(out))
"""

_CASES = [
    (  # the fluid network under contention, the persistent kernel and its gate, max-min solves
        "workloads/moe_fm1_flashmoe_2xh100.json",
        {
            "topology": "h100_2node_ib",
            "workload.gpus": [f"n{i // 8}.gpu{i % 8}" for i in range(16)],
            "workload.tokens_per_gpu": 256,
            "options.fidelity": "des",
        },
    ),
    (  # the host launch path, lone flows, deferred calls
        "workloads/launch_bound_chain_h100_pcie.json",
        {"workload.count": 300, "options.fidelity": "des"},
    ),
]


def _env(pure: bool) -> dict[str, str]:
    """This process's environment, asking for the source (``pure``) or not."""
    env = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    if pure:
        env[native.PURE_ENV] = "1"
    return env


def _require_compiled() -> None:
    """The compiled engine as installed (:func:`conftest.require_built`)."""
    require_built(native.COMPILED_MODULES + native.C_MODULES, "the compiled engine")


def _run(pure: bool) -> dict[str, object]:
    env = _env(pure)
    cases = json.dumps([[str(ROOT / p), o] for p, o in _CASES])
    done = subprocess.run(
        [sys.executable, "-c", _RUN, cases], env=env, capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout))


def test_the_compiled_engine_computes_what_the_source_computes() -> None:
    """Every metric of a contended FlashMoE DES over two nodes and of a launch chain, to the
    last bit (JSON keeps every float's digits), with the compiled engine and from source."""
    _require_compiled()
    compiled, source = _run(pure=False), _run(pure=True)
    assert compiled["build"] == native.COMPILED_BUILD
    assert str(source["build"]).startswith("pure Python from source")
    assert compiled["runs"] == source["runs"]


_PROCESSES = """
import json, sys
import simpy
sys.path.insert(0, sys.argv[1])
import process_semantics
from gpusim.engine.sim import CountingEnvironment
from gpusim.native import engine_build
print(json.dumps({"build": engine_build(),
                  "ours": process_semantics.transcript(CountingEnvironment),
                  "simpy": process_semantics.transcript(simpy.Environment)}))
"""


def test_compiled_processes_behave_as_simpys() -> None:
    """The compiled Process (its own ``_resume``), Timeout and Event against SimPy's: return
    values, failures thrown in, interrupts, an uncaught exception, an invalid yield
    (tests/process_semantics.py)."""
    _require_compiled()
    done = subprocess.run(
        [sys.executable, "-c", _PROCESSES, str(ROOT / "tests")],
        env=_env(pure=False),
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(done.stdout)
    assert out["build"] == native.COMPILED_BUILD
    assert out["ours"] == out["simpy"]
    assert len(out["ours"]) == 5


def test_the_command_line_writes_the_same_trace_compiled(tmp_path: Path) -> None:
    """``gpusim run`` with a trace, compiled and from source: the same Chrome trace, byte for
    byte (every event's time, the fluid network's utilisation counters, the launch records),
    and the same summary (timing.json, the run's own time, is apart)."""
    _require_compiled()
    outputs = []
    for pure in (False, True):
        out = tmp_path / ("source" if pure else "compiled")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "gpusim",
                "run",
                str(ROOT / "workloads" / "gemm_alltoall_hgx.json"),
                "--set",
                "options.trace=true",
                "--set",
                "options.fidelity=des",
                "-o",
                str(out),
            ],
            env=_env(pure),
            capture_output=True,
            check=True,
        )
        outputs.append(((out / "trace.json").read_bytes(), (out / "summary.json").read_bytes()))
    assert outputs[0] == outputs[1]
    assert len(outputs[0][0]) > 1000  # a trace with events in it


def _stub_classes() -> set[str]:
    """The SimPy classes the build's stubs name (build_stubs/simpy; setup.py's MYPY_CONFIG),
    by every dotted name they go by (``simpy.events.Event``; ``simpy.Environment``, re-exported
    by the package's stub)."""
    named: set[str] = set()
    for stub in (ROOT / "build_stubs" / "simpy").glob("*.pyi"):
        module = "simpy" if stub.stem == "__init__" else f"simpy.{stub.stem}"
        for node in ast.parse(stub.read_text()).body:
            if isinstance(node, ast.ClassDef):
                named.add(f"{module}.{node.name}")
            elif isinstance(node, ast.ImportFrom):
                named |= {f"{module}.{a.asname or a.name}" for a in node.names}
    return named


def test_no_compiled_class_subclasses_a_class_mypyc_cannot_see() -> None:
    """The build types only the compiled modules and the SimPy classes its stubs name (setup.py:
    every other import is Any), and mypyc compiles a class whose base it cannot see as if the
    base were ``object``: the class then loses its base at run time (a compiled SimPy
    environment crashed in SimPy's constructor). So a compiled module's classes may subclass
    only classes of compiled modules, typing's ``Protocol`` and the stubs' SimPy classes; a
    subclass of any other SimPy class must live in a module that is not compiled."""
    stubbed = _stub_classes()
    assert {"simpy.Environment", "simpy.events.Event"} <= stubbed  # the stubs were read
    defined: set[str] = set()
    bases: list[tuple[str, str, str]] = []  # (class, base as written, base's dotted name)
    for module in native.COMPILED_MODULES:
        tree = ast.parse(native.source_path(module).read_text())
        imported = {  # a name imported from a module -> its dotted name there
            a.asname or a.name: f"{node.module}.{a.name}"
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
            for a in node.names
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                defined.add(node.name)
                for base in map(ast.unparse, node.bases):
                    bases.append((f"{module}.{node.name}", base, imported.get(base, base)))
    unseen = [
        (cls, base)
        for cls, base, dotted in bases
        if base not in defined | {"Protocol"} and dotted not in stubbed
    ]
    assert not unseen
    assert any(dotted in stubbed for _, _, dotted in bases)  # the check can see a SimPy base


def _c_heap() -> Any:
    """``_heap_c`` as the install built it (:func:`conftest.require_built`)."""
    require_built(("gpusim.engine._heap_c",), "the C heap")
    return importlib.import_module("gpusim.engine._heap_c")


class _Key:
    """An element ordered through Python only (the C comparison falls back to it)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and self.value == other.value

    def __lt__(self, other: _Key) -> bool:
        return self.value < other.value

    def __hash__(self) -> int:
        return self.value


_ENTRIES = st.one_of(
    # SimPy's queue: (time, priority, id, event); times tie often, -0.0 and 0.0 among them
    st.tuples(
        st.sampled_from([0.0, -0.0, 1e-9, 1e-9 + 1e-25, 2.5, math.inf]),
        st.sampled_from([0, 1]),
        st.integers(0, 2**70),  # beyond a C long too
        st.sampled_from(["a", "b"]),
    ),
    # the fluid network's: (float, int, object), NaN included, and mixed int/float keys
    st.tuples(
        st.one_of(st.floats(allow_nan=True, width=16), st.integers(-3, 3)),
        st.integers(-(2**64), 2**64),
    ),
    st.tuples(st.builds(_Key, st.integers(0, 3)), st.integers(0, 3)),
)


@given(st.lists(st.one_of(_ENTRIES, st.none()), max_size=80))
def test_the_c_heap_leaves_what_heapq_leaves(operations: list[tuple[Any, ...] | None]) -> None:
    """Pushes (an entry) and pops (``None``) on a list, with ``_heap_c`` and with heapq: the
    same list after every call, and the same entries popped, for SimPy-like and fluid-like
    entries, ties, NaN, ints beyond a C long, int against float, tuples of other lengths and
    elements only Python can order (not against numbers: that raises, in both, below)."""
    c_heap = _c_heap()
    kinds = {type(e[0]) for e in operations if e is not None}
    assume(len(kinds) == 1 or _Key not in kinds)  # _Key against a number: TypeError, below
    ours: list[tuple[Any, ...]] = []
    theirs: list[tuple[Any, ...]] = []
    for entry in operations:
        if entry is None:
            if not theirs:
                with pytest.raises(IndexError):
                    c_heap.heappop(ours)
                continue
            assert c_heap.heappop(ours) is heapq.heappop(theirs)
        else:
            c_heap.heappush(ours, entry)
            heapq.heappush(theirs, entry)
        assert len(ours) == len(theirs)
        assert all(a is b for a, b in zip(ours, theirs, strict=True))


def test_the_c_heap_looks_past_equal_elements_that_are_distinct_objects() -> None:
    """Equal floats and ints that are not one object (Python shares small ints and constants,
    so random entries rarely have them): the comparison goes on to the next element, as the
    tuple comparison does."""
    c_heap = _c_heap()
    entries = [
        (float("0.5"), int("1000"), int(str(2**40 + eid)), "event") for eid in (5, 3, 9, 1, 4, 3)
    ]
    ours: list[tuple[float, int, int, str]] = []
    theirs: list[tuple[float, int, int, str]] = []
    for entry in entries:
        c_heap.heappush(ours, entry)
        heapq.heappush(theirs, entry)
        assert all(a is b for a, b in zip(ours, theirs, strict=True))
    popped = [c_heap.heappop(ours)[2] - 2**40 for _ in entries]
    assert popped == [1, 3, 3, 4, 5, 9]


def test_the_c_heap_refuses_what_heapq_refuses() -> None:
    """Not a list, or entries Python cannot order: the same exceptions as heapq."""
    c_heap = _c_heap()
    with pytest.raises(TypeError):
        c_heap.heappush((), 1)
    with pytest.raises(TypeError):
        c_heap.heappop(None)
    mixed: list[Any] = [(_Key(1), 0)]
    with pytest.raises(TypeError):
        c_heap.heappush(mixed, (0.5, 0))
    theirs: list[Any] = [(_Key(1), 0)]
    with pytest.raises(TypeError):
        heapq.heappush(theirs, (0.5, 0))


def test_the_engine_takes_the_c_heap_only_where_it_runs_compiled() -> None:
    """The test suite runs the source: heapq's functions."""
    from gpusim.engine import heap

    assert heap.heappop is heapq.heappop and heap.heappush is heapq.heappush
