"""The compiled engine (gpusim/native.py, setup.py): where a compiled module's source runs instead,
and that the compiled build computes exactly what the source computes."""

from __future__ import annotations

import importlib.machinery
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpusim import native

ROOT = Path(__file__).resolve().parents[1]
EXTENSION = importlib.machinery.EXTENSION_SUFFIXES[0]


def _package(tmp_path: Path, stamp: str | None, extension: bool = True) -> Path:
    """A package ``fakepkg`` with a module ``hot`` whose source sets ``FROM = "source"``, beside
    an "extension" that is not one (importing it fails) and a stamp holding ``stamp``."""
    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "hot.py").write_text('FROM = "source"\n')
    if extension:
        (pkg / f"hot{EXTENSION}").write_bytes(b"not a shared object")
    if stamp is not None:
        (pkg / f"hot{native.STAMP_SUFFIX}").write_text(stamp + "\n")
    return tmp_path


def test_a_module_without_an_extension_imports_as_usual(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(native.PURE_ENV, raising=False)
    root = _package(tmp_path, stamp=None, extension=False)
    assert native.source_reason("fakepkg.hot", root) is None


def test_a_current_stamp_keeps_the_extension(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(native.PURE_ENV, raising=False)
    root = _package(tmp_path, stamp=None)
    source = native.source_path("fakepkg.hot", root)
    native.stamp_path("fakepkg.hot", root).write_text(native.source_sha256(source) + "\n")
    assert native.source_reason("fakepkg.hot", root) is None
    monkeypatch.setenv(native.PURE_ENV, "0")  # "0" does not ask for the source
    assert native.source_reason("fakepkg.hot", root) is None


@pytest.mark.parametrize("stamp", [None, "0" * 64])
def test_an_edited_or_unstamped_module_runs_from_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stamp: str | None
) -> None:
    """The finder loads the source where the extension is stale; the plain import would load
    the extension (here not loadable: the import would fail)."""
    monkeypatch.delenv(native.PURE_ENV, raising=False)
    root = _package(tmp_path, stamp=stamp)
    reason = native.source_reason("fakepkg.hot", root)
    assert reason == "hot.py changed since it was compiled (reinstall to recompile)"
    finder = native.SourceFirst(["fakepkg.hot"], root)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    for name in ("fakepkg", "fakepkg.hot"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = __import__("fakepkg.hot", fromlist=["FROM"])
    assert module.FROM == "source"
    assert finder.reasons == {"fakepkg.hot": reason}
    # without the finder, the import takes the extension (here one that cannot load)
    monkeypatch.delitem(sys.modules, "fakepkg.hot")
    monkeypatch.setattr(sys, "meta_path", [m for m in sys.meta_path if m is not finder])
    with pytest.raises(ImportError):
        __import__("fakepkg.hot")


def test_the_environment_asks_for_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _package(tmp_path, stamp=None)
    monkeypatch.setenv(native.PURE_ENV, "1")
    assert native.source_reason("fakepkg.hot", root) == f"{native.PURE_ENV} is set"


def test_the_test_suite_runs_the_source() -> None:
    """conftest.py sets GPUSIM_PURE_PYTHON: coverage traces the source, tests patch classes."""
    assert native.engine_build().startswith("pure Python from source")


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
    (  # the fluid network under contention, the persistent kernel, max-min solves
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


def _run(pure: bool) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    if pure:
        env[native.PURE_ENV] = "1"
    cases = json.dumps([[str(ROOT / p), o] for p, o in _CASES])
    done = subprocess.run(
        [sys.executable, "-c", _RUN, cases], env=env, capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout))


def test_the_compiled_engine_computes_what_the_source_computes() -> None:
    """Every metric of a contended FlashMoE DES over two nodes and of a launch chain, to the
    last bit (JSON keeps every float's digits), with the compiled engine and from source."""
    compiled_here = all(native.has_extension(m) for m in native.COMPILED_MODULES)
    if not compiled_here:
        if os.environ.get("CI"):
            pytest.fail("CI installs the compiled engine: setup.py built no extension")
        pytest.skip("the engine was not compiled at install (no C compiler or mypyc)")
    compiled, source = _run(pure=False), _run(pure=True)
    assert compiled["build"] == "compiled (mypyc): maxmin, fluid"
    assert str(source["build"]).startswith("pure Python from source")
    assert compiled["runs"] == source["runs"]
