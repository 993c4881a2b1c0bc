"""Sweep points resolved the fast way (a shared cache of inlined, validated topologies and
profiles; workers resolving from the base and overrides; the content hash computed in pieces)
give exactly what resolving each point on its own gives, and a sweep's stored rows equal those of
simulating every point in a plain loop."""

from __future__ import annotations

import copy
import hashlib
import json
import random
from enum import IntEnum
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gpusim.cli import app
from gpusim.errors import SpecError
from gpusim.limits import Limits
from gpusim.spec.loading import (
    InlineCache,
    load_scenario,
    resolve_like,
    resolve_validated,
    scenario_from_dict,
)
from gpusim.spec.moe import MoELayerWorkload
from gpusim.spec.provenance import MAX_MAGNITUDE, Provenance, _blame_magnitudes, check_magnitudes
from gpusim.sweep import ResultStore, SweepSpec, plan_points
from gpusim.sweep.expand import sweep_base
from gpusim.sweep.runner import BaseParcel, run_planned, run_scenario

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _launch_base(tmp_path: Path) -> Path:
    raw = json.loads((ROOT / "workloads/launch_bound_chain_h100_pcie.json").read_text())
    raw["topology"] = str(ROOT / "topologies/h100_pcie_1gpu.json")
    raw["options"] = {"seed": 0, "fidelity": "analytic", "trace": False}
    raw["workload"]["count"] = 20
    path = tmp_path / "base.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize(
    "scenario", sorted(p.name for p in (ROOT / "workloads").glob("*.json") if "sweep" not in p.name)
)
def test_content_hash_is_the_hash_of_the_whole_json(scenario: str) -> None:
    description = 'quotes "x", ,"workload":{ and ,"options": inside, \u00e9, a backslash \\'
    resolved = load_scenario(ROOT / "workloads" / scenario, {"description": description})
    whole = hashlib.sha256(resolved.model_dump_json().encode()).hexdigest()[:16]
    assert resolved.content_hash == whole


def test_the_cache_resolves_what_each_point_resolves_alone(tmp_path: Path) -> None:
    base_file = _launch_base(tmp_path)
    raw = json.loads(base_file.read_text())
    kept = copy.deepcopy(raw)
    cache = InlineCache()
    overrides: list[dict[str, Any]] = [
        {"workload.kernel.bytes_read": 4096},
        {"topology.links.0.latency_ns": 900.0},  # into the shared topology: copied first
        {"workload.kernel.bytes_read": 8192},
        {"profile.launch.launch_api_us.value": 3.0},
        {"topology": "a100_pcie_1gpu"},  # another topology (and its default profile)
        {"options.seed": 3},
    ]
    for point in overrides:
        fast = scenario_from_dict(raw, base_file, point, cache)
        alone = scenario_from_dict(raw, base_file, point)
        assert fast == alone and fast.content_hash == alone.content_hash, point
    assert raw == kept
    plain = scenario_from_dict(raw, base_file, {}, cache)
    assert plain == scenario_from_dict(raw, base_file)  # the overrides left the cache as read


def test_a_bad_point_reads_the_same_error_with_the_cache(tmp_path: Path) -> None:
    base_file = _launch_base(tmp_path)
    raw = json.loads(base_file.read_text())
    cache = InlineCache()
    scenario_from_dict(raw, base_file, {}, cache)
    bad = {"topology.links.0.latency_ns": -1.0}
    with pytest.raises(SpecError) as alone:
        scenario_from_dict(raw, base_file, bad)
    with pytest.raises(SpecError) as fast:
        scenario_from_dict(raw, base_file, bad, cache)
    assert str(fast.value) == str(alone.value)


def test_sweep_rows_equal_simulating_each_point_in_a_loop(tmp_path: Path) -> None:
    base_file = _launch_base(tmp_path)
    axes = {"workload.kernel.bytes_read": [16384, 65536, 1 << 20]}
    systems = {"H100": {}, "A100": {"topology": "a100_pcie_1gpu"}}
    doc = {"name": "eq", "base": str(base_file), "axes": axes, "systems": systems}
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "out"
    result = runner.invoke(app, ["sweep", str(path), "-o", str(out), "--workers", "2"])
    assert result.exit_code == 0, result.output
    _, points = plan_points(SweepSpec.model_validate(doc), path, Limits())
    rows = {r["scenario_hash"]: r for r in ResultStore(out).rows()}
    assert len(rows) == 6
    for point in points:
        alone = load_scenario(base_file, point.overrides)
        outcome = run_scenario(alone, alone.content_hash)
        assert outcome.record is not None and alone.content_hash == point.scenario_hash
        row = rows[point.scenario_hash]
        for key, value in outcome.record.items():
            if key != "wall_s":
                assert row[key] == value and type(row[key]) is type(value), key


def test_the_store_reads_back_every_value_as_written(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    store.prepare()
    store.write_failure("b" * 16, "ValueError: once")
    records: dict[str, dict[str, Any]] = {
        "a" * 16: {"n": 1, "x": 0.5, "mixed": 3, "only_a": "s", "none": None},
        "b" * 16: {"n": 2, "x": 1.5, "mixed": 2.5, "flag": True},
    }
    for scenario_hash, record in records.items():
        store.write_result(scenario_hash, record)
    assert store.failures() == {}  # a point that now succeeds loses its failure record
    assert store.compact() == [] and (tmp_path / "results.jsonl").read_text() == ""
    again = ResultStore(tmp_path).results()
    assert again == records
    for scenario_hash, record in records.items():
        read = again[scenario_hash]
        assert list(read) == list(record)  # same keys, same order
        assert [type(v) for v in read.values()] == [type(v) for v in record.values()]


_WORKER_POINTS: list[dict[str, Any]] = [
    {"workload.kernel.bytes_read": 4096},
    {"topology.links.0.latency_ns": 900.0},
    {"profile.launch.launch_api_us.value": 3.0},
    {"topology": "a100_pcie_1gpu"},
    {"options.seed": 3, "workload.kernel.bytes_read": 8192},
]


def _planned_base(tmp_path: Path) -> tuple[Path, Any, list[Any]]:
    base_file = _launch_base(tmp_path)
    axes = {"workload.kernel.bytes_read": [4096]}
    systems = {f"s{i}": point for i, point in enumerate(_WORKER_POINTS)}
    doc = {"name": "w", "base": str(base_file), "axes": axes, "systems": systems}
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(doc))
    base, points = plan_points(SweepSpec.model_validate(doc), path, Limits())
    return base_file, base, points


def test_a_worker_resolves_the_validated_scenario_without_checking_it(tmp_path: Path) -> None:
    base_file, base, points = _planned_base(tmp_path)
    shipped = BaseParcel.of(base).open()  # what a worker gets: the planned cache's documents
    assert len(points) == len(_WORKER_POINTS)
    for point in points:
        alone = load_scenario(base_file, point.overrides)
        scenario, read_files = resolve_validated(
            shipped.raw, shipped.file, point.overrides, shipped.cache
        )
        assert not read_files, point.overrides  # every document came with the base
        assert scenario == alone, point.overrides
        fast = shipped.resolve_validated(point.overrides, point.scenario_hash)
        assert fast == alone and fast.content_hash == alone.content_hash == point.scenario_hash


def test_a_worker_checks_the_hash_of_a_point_that_reads_a_file(tmp_path: Path) -> None:
    base_file, _, points = _planned_base(tmp_path)
    empty = sweep_base(SweepSpec.model_validate({"name": "w", "base": str(base_file)}), base_file)
    for point in points:  # a base without the planned documents: each point reads its files
        scenario, read_files = resolve_validated(
            empty.raw, empty.file, point.overrides, empty.cache
        )
        assert read_files and scenario.content_hash == point.scenario_hash
    # a topology file changed after planning, read by a worker that lacks it: refused
    topology = json.loads((ROOT / "topologies/h100_pcie_1gpu.json").read_text())
    topology["links"][0]["latency_ns"] = 777.0
    changed = tmp_path / "h100_changed.json"
    changed.write_text(json.dumps(topology))
    raw = json.loads(base_file.read_text())
    raw["topology"] = str(changed)
    base_file.write_text(json.dumps(raw))
    fresh = sweep_base(SweepSpec.model_validate({"name": "w", "base": str(base_file)}), base_file)
    with pytest.raises(SpecError, match="not the one validated"):
        fresh.resolve_validated(points[0].overrides, points[0].scenario_hash)
    # in a worker's batch each such point fails alone, with no CPU of its own (a point's cpu_s
    # is its simulation's, never its resolution's); the others of the batch run
    outcomes = run_planned(fresh, [(p.overrides, p.scenario_hash) for p in points])
    assert [o.scenario_hash for o in outcomes] == [p.scenario_hash for p in points]
    refused = 0
    for point, outcome in zip(points, outcomes, strict=True):
        try:
            fresh.resolve_validated(point.overrides, point.scenario_hash)
        except SpecError:
            refused += 1
            assert outcome.record is None and outcome.cpu_s == 0.0
            assert outcome.error is not None and "not the one validated" in outcome.error
            assert outcome.traceback is not None and "SpecError" in outcome.traceback
        else:
            assert outcome.record is not None and outcome.error is None and outcome.cpu_s > 0
    assert 0 < refused < len(points)


def _moe_base(tmp_path: Path) -> Path:
    raw = json.loads((ROOT / "workloads/moe_fm1_flashmoe_2xh100.json").read_text())
    raw["topology"] = str(ROOT / "topologies/hgx_h100_8gpu.json")
    raw["workload"]["routing"] = {"sampling": "per_token"}
    path = tmp_path / "base.json"
    path.write_text(json.dumps(raw))
    return path


def _random_workload_values(rng: random.Random) -> dict[str, Any]:
    """Overrides of numbers in a MoE workload and its options, some of them invalid."""
    choices: dict[str, Any] = {
        "workload.tokens_per_gpu": lambda: rng.choice([0, 1, 7, 1024, 4096, 3.5, -2]),
        "workload.experts": lambda: rng.choice([2, 8, 9, 64, 206, 0]),
        "workload.top_k": lambda: rng.choice([1, 2, 4, 300]),
        "workload.capacity_factor": lambda: rng.choice([0.5, 1.0, 1.25, 2, -1.0, None]),
        "workload.routing.zipf_s": lambda: rng.choice([0.0, 1.1, 2]),
        "workload.strategy.cap": lambda: 3,  # not a field: refused
        "options.seed": lambda: rng.randrange(1000),
        "options.trace": lambda: rng.choice([True, False, 1.5]),
        "options.fidelity": lambda: None,
    }
    keys = rng.sample(sorted(choices), rng.randint(0, 4))
    return {key: choices[key]() for key in keys}


def test_a_point_made_from_a_template_is_the_point_resolved(tmp_path: Path) -> None:
    """resolve_like on random number overrides: the scenario the general path resolves (equal,
    with the same JSON and content hash), or None exactly where that path refuses."""
    rng = random.Random(17)
    for base_file in (_moe_base(tmp_path), _launch_base(tmp_path)):
        raw = json.loads(base_file.read_text())
        cache = InlineCache()
        template, _ = resolve_validated(raw, base_file, {"options.seed": 1}, cache)
        made = refused = 0
        for _ in range(300):
            overrides = _random_workload_values(rng)
            if "kernel" in json.dumps(raw["workload"]):  # the launch chain: its own numbers
                overrides = {k: v for k, v in overrides.items() if k.startswith("options.")}
                overrides["workload.kernel.bytes_read"] = rng.choice([1, 4096, 1.5, -3])
            quick = resolve_like(template, raw, overrides)
            try:
                slow, _ = resolve_validated(raw, base_file, overrides, cache)
            except SpecError:
                assert quick is None, overrides
                refused += 1
                continue
            assert quick is not None, overrides
            assert quick == slow, overrides
            assert quick.model_dump_json() == slow.model_dump_json()
            assert quick.content_hash == slow.content_hash, overrides
            made += 1
        assert made > 50 and refused > 50


def test_planning_with_templates_validates_as_each_point_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SweepBase.resolve (planning, checked) on random number overrides: each point the
    scenario resolved alone, or the same SpecError; also from a base whose workload the
    general path changes (a relative routing trace file made absolute; the current folder
    holds it too, so the relative path would pass the checks)."""
    monkeypatch.chdir(tmp_path)
    rng = random.Random(5)
    moe = _moe_base(tmp_path)
    traced = json.loads(moe.read_text())
    traced["workload"]["routing"] = {"distribution": "trace", "trace_file": "trace.json"}
    (tmp_path / "trace.json").write_text(json.dumps([[1] * 32]))
    traced_file = tmp_path / "traced.json"
    traced_file.write_text(json.dumps(traced))
    for base_file in (moe, traced_file):
        spec = SweepSpec.model_validate({"name": "t", "base": str(base_file)})
        base = sweep_base(spec, base_file)
        made = refused = 0
        for _ in range(150):
            overrides = _random_workload_values(rng)
            try:
                alone = load_scenario(base_file, overrides)
            except SpecError as exc:
                with pytest.raises(SpecError) as planned:
                    base.resolve(overrides)
                assert str(planned.value) == str(exc), overrides
                refused += 1
                continue
            point = base.resolve(overrides)
            assert point == alone and point.content_hash == alone.content_hash, overrides
            made += 1
        assert made > 20 and refused > 20
    assert isinstance(point.workload, MoELayerWorkload)
    trace_file = point.workload.routing.trace_file
    assert trace_file is not None and Path(trace_file).is_absolute()


def test_a_template_is_not_taken_where_it_does_not_apply(tmp_path: Path) -> None:
    base_file = _launch_base(tmp_path)
    raw = json.loads(base_file.read_text())
    template, _ = resolve_validated(raw, base_file, {}, InlineCache())
    for overrides in (
        {"topology.links.0.latency_ns": 900.0},  # not the workload
        {"profile.launch.launch_api_us.value": 3.0},
        {"name": "other"},
        {"workload.kernel.name": "k2"},  # a string may be a reference
        {"workload.kernel": {"bytes_read": 1}},  # an object may hold one
        {"options.fidelity": "des"},
    ):
        assert resolve_like(template, raw, overrides) is None, overrides
    assert resolve_like(template, "not a scenario", {"options.seed": 2}) is None
    by_name = {**raw, "workload": "launch_bound_chain_h100_pcie.json"}  # a reference
    assert resolve_like(template, by_name, {"options.seed": 2}) is None


def test_an_unchecked_model_is_not_taken_by_a_checked_resolution(tmp_path: Path) -> None:
    base_file = _launch_base(tmp_path)
    raw = json.loads(base_file.read_text())
    cache = InlineCache()
    bad = {"topology.links.0.latency_ns": -1.0}
    resolve_validated(raw, base_file, {}, cache)  # the unchecked path first
    with pytest.raises(SpecError) as fast:
        scenario_from_dict(raw, base_file, bad, cache)
    with pytest.raises(SpecError) as alone:
        scenario_from_dict(raw, base_file, bad)
    assert str(fast.value) == str(alone.value)
    assert scenario_from_dict(raw, base_file, {}, cache) == scenario_from_dict(raw, base_file)


def test_the_quick_magnitude_look_refuses_what_the_walk_refuses() -> None:
    class Big(IntEnum):
        huge = MAX_MAGNITUDE + 2

    huge = MAX_MAGNITUDE + 2
    docs: list[Any] = [
        {"a": 1, "b": [1.5, {"c": -(2**53)}], "d": None, "e": "s", "f": True},
        {"a": {"b": [0, 1, {"c": huge}]}},
        {"a": [float("nan"), float("inf")]},
        {"a": [-float("inf")]},
        {"a": Big.huge},
        {"a": [{"b": 2**60}], "flag": True},
        {"model": InlineCache(), "x": 3},  # not JSON: skipped by both
        huge,
        [1, 2, [3, -huge]],
    ]
    for doc in docs:
        errors: list[str | None] = []
        for check in (check_magnitudes, _blame_magnitudes):
            try:
                check(doc, Provenance())
                errors.append(None)
            except SpecError as exc:
                errors.append(str(exc))
        assert errors[0] == errors[1], doc
    assert sum(1 for doc in docs if _refused(doc)) == 7  # all but the first and the model


def _refused(doc: Any) -> bool:
    try:
        check_magnitudes(doc, Provenance())
    except SpecError:
        return True
    return False


def test_the_summary_is_what_a_dict_writer_writes(tmp_path: Path) -> None:
    import csv
    import io

    rows: list[dict[str, Any]] = [
        {"a": 1, "b": "x,y", "c": None},
        {"a": 2.5, "d": 'q"uote', "e": True},
        {"b": "two\nlines"},
    ]
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    store = ResultStore(tmp_path)
    assert store.write_summary_csv(rows).read_text() == buf.getvalue()


def test_the_manifest_text_is_the_manifest() -> None:
    """The manifest's quick writer (points a compact line each) writes the very document, its
    keys in their order, whatever the entries hold."""
    import random

    from gpusim.sweep.store import manifest_text

    rng = random.Random(17)
    scalars: list[Any] = [0, -3, 2.5, 1e-300, True, None, "", 'é ☃ "q"\n', "a,b"]

    def entry(i: int) -> dict[str, Any]:
        axes = {f"workload.k{j}": rng.choice(scalars) for j in range(rng.randrange(4))}
        return {"point": i, "system": rng.choice(["", "s ☃"]), "axes": axes, "seed": i}

    for n in (0, 1, 2, 7):
        manifest: dict[str, Any] = {
            "name": "n",
            "axes": ["x"],
            "points": [entry(i) for i in range(n)],
        }
        for doc in (manifest, {"points": manifest["points"]}, {"points": [], **manifest}):
            text = manifest_text(doc)
            assert json.loads(text) == doc and list(json.loads(text)) == list(doc)
            assert text.endswith("}\n") and ("\n    {" in text) == (bool(n) and "points" in doc)
