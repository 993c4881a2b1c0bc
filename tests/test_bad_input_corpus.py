"""A generated corpus of bad inputs: mutations of the shipped files (wrong types, negatives, huge
numbers, binary bytes, truncation, missing fields, unknown keys, bad references, bad names) and of
the command line (bad output folders, runaway sizes). Every case must end with exit code 2, one
line on stderr naming the file and a JSON path on the way to the mutation, no traceback and
nothing written.

The corpus is drawn, not listed: every mutation kind is applied to every place of every source
file where it applies, and a seeded sample of those places is kept (``PER_KIND``), so a new field
or a new shipped file joins the corpus by itself.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gpusim.cli import app
from gpusim.errors import json_path
from gpusim.spec.schema import all_schemas
from gpusim.sweep import executors

ROOT = Path(__file__).resolve().parents[1]
PER_KIND = int(os.environ.get("GPUSIM_CORPUS_PER_KIND", "3"))
"""Places sampled per (source, mutation kind); each runs one command (``run``/``sweep`` or
``check``, alternately), file-level mutations run both. Set GPUSIM_CORPUS_PER_KIND=1000 for the
whole corpus (minutes)."""
SEED = 11

runner = CliRunner()
Loc = tuple[int | str, ...]


@dataclass(frozen=True)
class Source:
    """A shipped file to mutate, and how the mutated copy is used."""

    label: str
    path: Path
    role: str  # "scenario", "sweep", "topology", "profile" or "gpu"


SOURCES = [
    Source("gemm_alltoall", ROOT / "workloads/gemm_alltoall_hgx.json", "scenario"),
    Source("kernel_chain", ROOT / "workloads/launch_bound_chain_h100_pcie.json", "scenario"),
    Source("transfers", ROOT / "workloads/gh200_c2c_transfers.json", "scenario"),
    Source("moe_flashmoe", ROOT / "workloads/moe_fm1_flashmoe_2xh100.json", "scenario"),
    Source("moe_megatron", ROOT / "workloads/moe_fm2_megatron_2xh100.json", "scenario"),
    Source("router", ROOT / "workloads/router_alf_lb.json", "scenario"),
    Source("gemm_a100", ROOT / "validation/scenarios/fl1_dense_gemm_a100.json", "scenario"),
    Source("sweep", ROOT / "workloads/demo_alltoall_sweep.json", "sweep"),
    Source("topology", ROOT / "topologies/h100_pcie_2gpu.json", "topology"),
    Source("profile", ROOT / "topologies/profiles/h100_pcie.json", "profile"),
    Source("gpu", ROOT / "topologies/components/gpu/h100_pcie.json", "gpu"),
    Source("ledger", ROOT / "validation/calibration_points.json", "ledger"),
]

# Places whose mutation is valid input by design, not a gap (kept short and explained).
ALLOWED_NEGATIVE: set[str] = set()
"""JSON paths (source label + path) where a negative number is meaningful."""


# Cases that fail on this branch only because the semantic checks of MoE and router workloads
# against the topology (and fp8 against the GPU) move to per-family hooks that the loader and
# `gpusim check` both call: covered by the registry branch (issue 9), which the integrator merges
# with this one. Until then these run as expected failures (an XPASS once both are merged).
@dataclass
class Case:
    """One bad input: the files to write, the command to run, what the error must name."""

    id: str
    files: dict[str, bytes]  # name in the case folder -> content
    args: list[str]  # "{dir}" is replaced by the case folder
    blamed: str  # the file the error must name ("{dir}/..." or a literal)
    loc: Loc | None  # where the mutation is (the error's path must lie on the way), None: any
    kind: str = ""


# --- reading the shipped files and the schemas ---------------------------------------------------


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _always_required() -> set[str]:
    """Keys that every schema object having them requires: deleting one is always an error."""
    required: dict[str, bool] = {}

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict):
                req = set(node.get("required", []))
                for key in props:
                    required[key] = required.get(key, True) and key in req
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(all_schemas())
    return {key for key, always in required.items() if always}


REQUIRED = _always_required()
FREE_KEYS = {"axes", "systems", "field_sources"}
"""Objects whose keys are data (dotted paths, system names, field names), not fields."""


def _places(doc: Any, loc: Loc = ()) -> Iterator[tuple[Loc, Any]]:
    yield loc, doc
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _places(value, (*loc, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _places(value, (*loc, i))


def _set(doc: Any, loc: Loc, value: Any) -> Any:
    out = copy.deepcopy(doc)
    node = out
    for part in loc[:-1]:
        node = node[part]
    node[loc[-1]] = value
    return out


def _delete(doc: Any, loc: Loc) -> Any:
    out = copy.deepcopy(doc)
    node = out
    for part in loc[:-1]:
        node = node[part]
    del node[loc[-1]]
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _in_free_object(loc: Loc) -> bool:
    return any(part in FREE_KEYS for part in loc[:-1])


def _is_reference(source: Source, loc: Loc, value: Any) -> bool:
    if not isinstance(value, str):
        return False
    if source.role == "scenario":
        return loc in {("topology",), ("profile",)} or (loc == ("workload",))
    if source.role == "sweep":
        return loc == ("base",)
    if source.role == "ledger":
        return len(loc) == 3 and loc[-1] == "scenario"
    if source.role == "topology":
        return loc == ("default_profile",) or (len(loc) == 3 and loc[-1] == "model")
    return False


def _mutations(source: Source, doc: Any) -> Iterator[tuple[str, Loc, Any]]:
    """(kind, place, mutated document) for every place each kind applies to."""
    for loc, value in _places(doc):
        if not loc:
            continue
        if _is_number(value):
            yield "string_for_number", loc, _set(doc, loc, "12 GB")
            yield "huge", loc, _set(doc, loc, 1e30)
            yield "huge_int", loc, _set(doc, loc, 10**40)
            label = f"{source.label}:{json_path(loc)}"
            if value >= 0 and label not in ALLOWED_NEGATIVE:
                yield "negative", loc, _set(doc, loc, -1 if isinstance(value, int) else -0.5)
        elif isinstance(value, bool):
            yield "string_for_bool", loc, _set(doc, loc, "maybe")
        elif isinstance(value, str):
            yield "number_for_string", loc, _set(doc, loc, 12345)
            if _is_reference(source, loc, value):
                yield "bad_reference", loc, _set(doc, loc, "no_such_thing")
                yield "bad_path_reference", loc, _set(doc, loc, "missing/nowhere.json")
        elif isinstance(value, list):
            yield "object_for_list", loc, _set(doc, loc, {"a": 1})
        elif isinstance(value, dict):
            yield "unknown_key", (*loc, "zz_unknown"), _set(doc, loc, {**value, "zz_unknown": 1})
            yield "list_for_object", loc, _set(doc, loc, [1, 2])
        if (
            isinstance(loc[-1], str)
            and loc[-1] in REQUIRED
            and not _in_free_object(loc)
            and not (source.role == "scenario" and loc[-1] == "kind" and len(loc) > 2)
        ):
            yield "missing_field", loc, _delete(doc, loc)
    yield from _semantic_mutations(doc)
    if source.role in {"scenario", "sweep"}:  # names that become folder names
        for bad in (".", "..", "a/b", "", "x" * 200):
            yield f"name_{bad[:3] or 'empty'}", ("name",), _set(doc, ("name",), bad)


DEVICE_KEYS = {"gpu", "gpus", "src", "dst"}


def _semantic_mutations(doc: Any) -> Iterator[tuple[str, Loc, Any]]:
    """Well-formed values that do not fit the topology or the workload's own arithmetic."""
    for loc, value in _places(doc):
        if not loc or _in_free_object(loc):
            continue
        key = loc[-1] if isinstance(loc[-1], str) else loc[-2] if len(loc) > 1 else None
        if key in DEVICE_KEYS and isinstance(value, str):
            yield "unknown_device", loc, _set(doc, loc, "gpu99")
        if key == "gpus" and isinstance(value, list) and value:
            yield "empty_device_list", loc, _set(doc, loc, [])
            yield "duplicate_device", loc, _set(doc, loc, [value[0], *value])
        if key == "experts" and _is_number(value):
            yield "experts_not_dividing", loc, _set(doc, loc, 33)
        if key == "metrics" and isinstance(value, str):
            yield "unknown_metric", loc, _set(doc, loc, "no_such_metric_s")
        if key == "dtype" and isinstance(value, str) and "a100" in str(doc.get("topology")):
            yield "unsupported_dtype", loc, _set(doc, loc, "fp8")


def _file_level(text: bytes) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(SEED)
    yield "binary", bytes(rng.randrange(256) for _ in range(512))
    yield "binary_prefix", b"\xff\xfe\x00" + text
    yield "truncated", text[: len(text) // 2]
    yield "empty", b""
    number = rb'(?m)^(\s*"[^"\n]*": |\s*)-?[0-9][0-9.eE+-]*(?=,?$)'  # a value on its own line
    yield "nan", re.sub(number, rb"\1NaN", text, count=1)
    yield "infinity", re.sub(number, rb"\1-Infinity", text, count=1)
    yield "not_an_object", b"[1, 2, 3]"
    yield "deep", b"[" * 100_000 + b"]" * 100_000


# --- turning a mutated file into a command -----------------------------------------------------

SCENARIO_FOR = {
    "topology": {
        "name": "uses_topology",
        "topology": "{file}",
        "workload": {"kind": "kernel_chain", "kernel": {"op": "null"}, "count": 4},
    },
    "profile": {
        "name": "uses_profile",
        "topology": "h100_pcie_2gpu",
        "workload": {"kind": "kernel_chain", "kernel": {"op": "null"}, "count": 4},
        "profile": "{file}",
    },
}


def _anchor(source: Source, doc: Any) -> Any:
    """Make the source's relative references absolute (the copy lives in another folder)."""
    if source.role == "sweep" and isinstance(doc, dict) and isinstance(doc.get("base"), str):
        doc = _set(doc, ("base",), str(source.path.parent / doc["base"]))
    if source.role == "ledger":
        for i, case in enumerate(doc["cases"]):
            if isinstance(case.get("scenario"), str):
                doc = _set(
                    doc, ("cases", i, "scenario"), str(source.path.parent / case["scenario"])
                )
    return doc


def _commands(source: Source, name: str) -> list[list[str]]:
    """The commands that read the mutated file ``name`` (in the case folder)."""
    file = f"{{dir}}/{name}"
    if source.role == "scenario":
        return [["run", file, "-o", "{dir}/out"], ["check", file]]
    if source.role == "sweep":
        return [["sweep", file, "-o", "{dir}/out", "--workers", "1"], ["check", file]]
    if source.role == "ledger":
        return [["check", file]]
    if source.role == "gpu":
        return [["run", "{dir}/scenario.json", "-o", "{dir}/out"], ["check", file]]
    return [["run", "{dir}/scenario.json", "-o", "{dir}/out"], ["check", file]]


def _support_files(source: Source, name: str) -> dict[str, bytes]:
    """Files that make the mutated one reachable from ``run``."""
    if source.role in SCENARIO_FOR:
        doc = json.loads(json.dumps(SCENARIO_FOR[source.role]).replace("{file}", name))
        return {"scenario.json": json.dumps(doc).encode()}
    if source.role == "gpu":
        topo = _load(ROOT / "topologies/h100_pcie_2gpu.json")
        for dev in topo["devices"]:
            if dev.get("kind") == "gpu":
                dev["model"] = name
        scenario = dict(SCENARIO_FOR["topology"], topology="topology.json")
        return {
            "topology.json": json.dumps(topo).encode(),
            "scenario.json": json.dumps(scenario).encode(),
        }
    return {}


def _cases() -> list[Case]:
    cases: list[Case] = []
    for source in SOURCES:
        doc = _anchor(source, _load(source.path))
        name = source.path.name
        support = _support_files(source, name)
        by_kind: dict[str, list[tuple[Loc, Any]]] = {}
        for kind, loc, mutated in _mutations(source, doc):
            by_kind.setdefault(kind, []).append((loc, mutated))
        commands = _commands(source, name)
        for kind, found in sorted(by_kind.items()):
            rng = random.Random(f"{SEED}-{source.label}-{kind}")  # stable as kinds are added
            for n, (loc, mutated) in enumerate(rng.sample(found, min(PER_KIND, len(found)))):
                content = json.dumps(mutated).encode()
                args = commands[n % len(commands)]
                cid = f"{source.label}-{kind}-{json_path(loc)}-{args[0]}"
                files = {name: content, **support}
                cases.append(Case(cid, files, args, f"{{dir}}/{name}", loc, kind))
        text = json.dumps(doc, indent=2).encode()
        for kind, content in _file_level(text):
            for args in _commands(source, name):
                cid = f"{source.label}-{kind}-{args[0]}"
                cases.append(Case(cid, {name: content, **support}, args, f"{{dir}}/{name}", ()))
    return cases


CASES = _cases()


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def _paths_in(line: str) -> list[str]:
    return re.findall(r"\$[^\s:,()']*", line)


def _on_the_way(reported: str, mutated: str) -> bool:
    """Whether the reported JSON path is the mutated one, an ancestor (not the root, unless the
    mutation is the whole file) or a descendant."""
    if reported == "$":
        return mutated == "$"
    a, b = (reported, mutated) if len(reported) <= len(mutated) else (mutated, reported)
    return b == a or b.startswith(a + ".") or b.startswith(a + "[")


def _run_case(case: Case, tmp_path: Path) -> None:
    for name, content in case.files.items():
        (tmp_path / name).write_bytes(content)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    args = [a.replace("{dir}", str(tmp_path)) for a in case.args]
    result = runner.invoke(app, args)
    detail = f"{args}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.exception is None or isinstance(result.exception, SystemExit), detail
    assert result.exit_code == 2, detail
    assert "Traceback" not in result.output, detail
    lines = _lines(result.stderr)
    assert len(lines) == 1, detail
    line = lines[0]
    assert case.blamed.replace("{dir}", str(tmp_path)) in line, detail
    paths = _paths_in(line)
    assert paths, detail
    if case.loc is not None:
        mutated = json_path(case.loc)
        assert any(_on_the_way(p, mutated) for p in paths), f"{mutated} vs {paths}\n{detail}"
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, f"something written\n{detail}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_file(case: Case, tmp_path: Path) -> None:
    _run_case(case, tmp_path)


# --- the command line: output folders, runaways, overrides ---------------------------------------

SCENARIO = str(ROOT / "workloads/gemm_alltoall_hgx.json")
RUNAWAYS = {
    "tokens": ("workloads/moe_fm1_flashmoe_2xh100.json", "workload.tokens_per_gpu=1000000000"),
    "messages": ("workloads/gemm_alltoall_hgx.json", "workload.messages_per_peer=1000000000"),
    "kernels": ("workloads/launch_bound_chain_h100_pcie.json", "workload.count=1000000000000"),
    "router_steps": ("workloads/router_alf_lb.json", "workload.steps=1000000000"),
    "router_tokens": ("workloads/router_alf_lb.json", "workload.tokens_per_step=1000000000"),
}


def _cli_fails(args: list[str], tmp_path: Path, *, names: str, seconds: float = 10.0) -> str:
    before = sorted(p.name for p in tmp_path.rglob("*"))
    t0 = time.monotonic()
    result = runner.invoke(app, args)
    elapsed = time.monotonic() - t0
    detail = f"{args}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.exit_code == 2, detail
    assert "Traceback" not in result.output, detail
    lines = _lines(result.stderr)
    assert len(lines) == 1, detail
    assert names in lines[0], detail
    assert elapsed < seconds, f"took {elapsed:.1f} s\n{detail}"
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, f"something written\n{detail}"
    return lines[0]


@pytest.mark.parametrize("which", sorted(RUNAWAYS))
def test_runaway_is_refused_in_seconds(which: str, tmp_path: Path) -> None:
    scenario, assignment = RUNAWAYS[which]
    path = str(ROOT / scenario)
    command = ["run", path, "--set", assignment, "-o", str(tmp_path / "out")]
    line = _cli_fails(command, tmp_path, names=path)
    # refused as a runaway (with the option that raises the limit) or, first, as a working
    # set no GPU can hold (physics: no option raises it)
    assert "$.workload." in line, line
    assert "--max-" in line or "GB of device memory" in line, line


def test_runaway_sweep_is_counted_not_expanded(tmp_path: Path) -> None:
    axes = {f"workload.gemm.{k}": list(range(1, 1001)) for k in ("m", "n", "k")}
    axes["options.seed"] = list(range(3))
    sweep = {"name": "huge", "base": SCENARIO, "axes": axes}
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(sweep))
    line = _cli_fails(["sweep", str(path), "-o", str(tmp_path / "out")], tmp_path, names=str(path))
    assert "3e+09" in line and "--max-points" in line
    line = _cli_fails(["check", str(path)], tmp_path, names=str(path))


def test_limit_option_raises_the_limit(tmp_path: Path) -> None:
    args = ["run", SCENARIO, "--set", "workload.messages_per_peer=64", "-o", str(tmp_path / "o")]
    line = _cli_fails([*args, "--max-events", "1000"], tmp_path, names=SCENARIO)
    assert "--max-events" in line
    result = runner.invoke(app, [*args, "--fidelity", "analytic", "--max-events", "1e9"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "assignment",
    ["options.seed=-1", "options.seed=1e300", "name=..", "name=.", "workload.gemm.m=1e30"],
)
def test_bad_override(assignment: str, tmp_path: Path) -> None:
    args = ["run", SCENARIO, "--set", assignment, "-o", str(tmp_path / "out")]
    line = _cli_fails(args, tmp_path, names=SCENARIO)
    assert f"$.{assignment.split('=')[0]}" in line


def test_output_onto_a_file_or_under_one(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    for target in (blocker, blocker / "sub"):
        line = _cli_fails(["run", SCENARIO, "-o", str(target)], tmp_path, names=str(target))
        assert "not a folder" in line
        _cli_fails(
            ["sweep", str(ROOT / "workloads/demo_alltoall_sweep.json"), "-o", str(target)],
            tmp_path,
            names=str(target),
        )
    assert blocker.read_text() == "keep me"


def test_unreachable_dask_scheduler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("dask.distributed")
    monkeypatch.setattr(executors, "CONNECT_TIMEOUT_S", 1.0)
    sweep = str(ROOT / "workloads/demo_launch_sweep.json")
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["sweep", sweep, "-o", str(out), "--scheduler", "tcp://127.0.0.1:9"]
    )
    assert result.exit_code == 2, result.output
    lines = _lines(result.stderr)
    assert len(lines) == 1 and "--scheduler tcp://127.0.0.1:9" in lines[0], result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("scenario", "assignment", "path"),
    [
        ("workloads/gemm_alltoall_hgx.json", "workload.gemm.m=100000000", "$.workload.gemm"),
        ("workloads/moe_fm1_flashmoe_2xh100.json", "workload.intermediate=10000000", "$.workload"),
        (
            "workloads/gh200_c2c_transfers.json",
            "workload.transfers.0.bytes=1000000000000",
            "$.workload.transfers[0].bytes",
        ),
    ],
)
def test_working_set_beyond_device_memory(
    scenario: str, assignment: str, path: str, tmp_path: Path
) -> None:
    file = str(ROOT / scenario)
    args = ["run", file, "--set", assignment, "-o", str(tmp_path / "out")]
    line = _cli_fails(args, tmp_path, names=file)
    assert path in line and "GB of device memory" in line, line
