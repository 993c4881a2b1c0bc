"""Sweeps: expansion, content hashes, isolation of failing points, resume after a crash, and the
Dask executor giving the same rows as local processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    finished_points,
    make_h100_spec,
    make_profile,
    make_star_topology,
    wait_for_points,
)
from typer.testing import CliRunner

from gpusim.cli import app
from gpusim.errors import SpecError
from gpusim.spec.workload import GemmAllToAllWorkload
from gpusim.sweep import ResultStore, SweepSpec, expand, make_executor, manifest_for, run_sweep
from gpusim.sweep.executors import ExecutorKind

runner = CliRunner()


def _base(gpu_count: int = 2, **gpu_overrides: Any) -> dict[str, Any]:
    topo = make_star_topology(gpu_count, gpu=make_h100_spec(**gpu_overrides))
    return {
        "name": "sweep-test",
        "topology": topo.model_dump(mode="json"),
        "workload": {"kind": "gemm_alltoall", "gemm": {"m": 1024, "n": 1024, "k": 1024}},
        "profile": make_profile().model_dump(mode="json"),
        "options": {"fidelity": "analytic"},
    }


def _sweep(tmp_path: Path, **fields: Any) -> tuple[SweepSpec, Path]:
    doc = {"name": "t", "base": _base(), **fields}
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(doc))
    return SweepSpec.model_validate(doc), path


def test_product_expansion(tmp_path: Path) -> None:
    sweep, path = _sweep(
        tmp_path,
        axes={"workload.gemm.m": [512, 1024, 2048], "workload.gemm.k": [256, 512]},
        systems={"a": {}, "b": {"workload.messages_per_peer": 2}},
        seeds=[1, 2],
    )
    points = expand(sweep, path)
    assert len(points) == 2 * 3 * 2 * 2
    coords = {
        (p.system, p.axis_values["workload.gemm.m"], p.axis_values["workload.gemm.k"], p.seed)
        for p in points
    }
    assert len(coords) == len(points)
    b = next(p for p in points if p.system == "b" and p.axis_values["workload.gemm.m"] == 2048)
    workload = b.scenario.workload
    assert isinstance(workload, GemmAllToAllWorkload)
    assert workload.messages_per_peer == 2
    assert workload.gemm.m == 2048
    assert {p.scenario.options.seed for p in points} == {1, 2}


def test_zip_expansion_pairs_values(tmp_path: Path) -> None:
    sweep, path = _sweep(
        tmp_path,
        axes={"workload.gemm.m": [512, 1024, 2048], "workload.gemm.n": [64, 128, 256]},
        combine="zip",
    )
    points = expand(sweep, path)
    assert [
        (p.axis_values["workload.gemm.m"], p.axis_values["workload.gemm.n"]) for p in points
    ] == [
        (512, 64),
        (1024, 128),
        (2048, 256),
    ]


def test_zip_needs_equal_lengths() -> None:
    with pytest.raises(ValueError, match="equal length"):
        SweepSpec.model_validate(
            {"name": "t", "base": {}, "axes": {"a": [1, 2], "b": [1]}, "combine": "zip"}
        )


def test_tied_axis_varies_its_paths_together_in_a_product(tmp_path: Path) -> None:
    sweep, path = _sweep(
        tmp_path,
        axes={
            "workload.gemm.m,workload.gemm.k": [[512, 64], [1024, 128]],
            "workload.gemm.n": [8, 16],
        },
    )
    got = [
        tuple(p.axis_values[k] for k in ("workload.gemm.m", "workload.gemm.k", "workload.gemm.n"))
        for p in expand(sweep, path)
    ]
    assert got == [(512, 64, 8), (512, 64, 16), (1024, 128, 8), (1024, 128, 16)]
    for point in expand(sweep, path):
        workload = point.scenario.workload
        assert isinstance(workload, GemmAllToAllWorkload)
        assert workload.gemm.k == point.axis_values["workload.gemm.k"]


def test_tied_axis_values_must_have_one_entry_per_path() -> None:
    with pytest.raises(ValueError, match="ties 2 paths"):
        SweepSpec.model_validate({"name": "t", "base": {}, "axes": {"a,b": [[1, 2], [3]]}})


def test_bad_tied_value_is_blamed_on_its_axis(tmp_path: Path) -> None:
    axis = "workload.gemm.m,workload.gemm.k"
    sweep, path = _sweep(tmp_path, axes={axis: [[512, 64], [512, -1]]})
    with pytest.raises(SpecError) as info:
        expand(sweep, path)
    assert str(info.value).startswith(f"{path}: $.axes.{axis}[1]: point (base, ")
    assert "workload.gemm.k=-1" in str(info.value)


def test_replicas_give_consecutive_seeds(tmp_path: Path) -> None:
    sweep, path = _sweep(tmp_path, replicas=3)
    assert [p.seed for p in expand(sweep, path)] == [0, 1, 2]


def test_unknown_axis_path_fails_before_running(tmp_path: Path) -> None:
    sweep, path = _sweep(tmp_path, axes={"workload.gemm.mm": [1, 2]})
    with pytest.raises(SpecError) as info:
        expand(sweep, path)
    assert (
        str(path) in str(info.value)
        and "$.axes" in str(info.value)
        and "gemm.mm" in str(info.value)
    )


def test_content_hash_is_stable_and_sensitive(tmp_path: Path) -> None:
    sweep, path = _sweep(tmp_path, axes={"workload.gemm.m": [512, 1024]})
    first = [p.scenario_hash for p in expand(sweep, path)]
    again = [p.scenario_hash for p in expand(sweep, path)]
    assert first == again and len(set(first)) == 2
    # the hash is of the resolved scenario: the same content written differently hashes the same
    sweep2, path2 = _sweep(tmp_path, axes={"workload.gemm.m": [1024.0]})
    assert expand(sweep2, path2)[0].scenario_hash == first[1]


def _profile_without_fp8() -> dict[str, Any]:
    """A profile with no fp8 GEMM efficiency: a point in fp8 passes every static check (the GPU
    has an fp8 peak) and fails only when the model looks the efficiency up."""
    profile = make_profile().model_dump(mode="json")
    for by_dtype in profile["tensor_efficiency"].values():
        del by_dtype["fp8"]
    return profile


def test_failing_point_is_isolated_and_reported(tmp_path: Path) -> None:
    doc = {
        "name": "t",
        "base": {**_base(), "profile": _profile_without_fp8()},
        "axes": {"workload.gemm.dtype": ["bf16", "fp8", "fp16"]},
    }
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "out"
    result = runner.invoke(app, ["sweep", str(path), "-o", str(out), "--workers", "1"])
    assert result.exit_code == 1
    assert "has no tensor_efficiency.wgmma.fp8" in result.output
    rows = ResultStore(out).rows()
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert "fp8" in rows[1]["error"] and rows[1].get("makespan_s") is None
    assert rows[0]["makespan_s"] > 0 and rows[2]["makespan_s"] > 0
    assert (out / "summary.csv").read_text().count("\n") == 4


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def test_resume_after_a_worker_is_killed(tmp_path: Path) -> None:
    base = _base(4)
    base["options"] = {"fidelity": "des"}
    base["workload"]["messages_per_peer"] = 200  # slow enough per point to be caught mid-sweep
    doc = {
        "name": "t",
        "base": base,
        "axes": {"workload.gemm.m": list(range(256, 256 + 64 * 40, 64))},
    }
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "gpusim", "sweep", str(path), "-o", str(out), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_points(out, 3)
    workers = _children(proc.pid)
    assert workers, "no worker process found"
    for w in workers:
        os.kill(w, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "rerun" in stderr
    before = finished_points(out)
    assert 3 <= len(before) < 40
    assert not list(out.glob(".*"))  # no partial file left where a reader could see it
    again = runner.invoke(app, ["sweep", str(path), "-o", str(out), "--workers", "1"])
    assert again.exit_code == 0, again.output
    assert f"{len(before)} already stored" in again.output
    after = finished_points(out)
    assert len(after) == 40
    assert all(after[h] == record for h, record in before.items())  # nothing recomputed
    rows = ResultStore(out).rows()
    assert len(rows) == 40 and len({r["point"] for r in rows}) == 40
    assert all(r["status"] == "ok" for r in rows)


def _run_with(kind: ExecutorKind, sweep: SweepSpec, path: Path, out: Path) -> list[dict[str, Any]]:
    points = expand(sweep, path)
    store = ResultStore(out)
    store.prepare()
    store.write_manifest(manifest_for(points, sweep.name, sweep.description))
    with make_executor(kind, workers=2) as pool:
        outcome = run_sweep(points, store, pool)
    assert outcome.ok
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in store.rows()]


def test_dask_local_cluster_gives_the_same_rows(tmp_path: Path) -> None:
    sweep, path = _sweep(
        tmp_path,
        axes={"workload.gemm.m": [512, 1024, 4096]},
        systems={"x": {}, "y": {"workload.messages_per_peer": 3}},
    )
    process_rows = _run_with("process", sweep, path, tmp_path / "p")
    dask_rows = _run_with("dask", sweep, path, tmp_path / "d")
    assert len(process_rows) == 6
    assert process_rows == dask_rows


def test_batches_hold_less_work_once_points_come_back_traced() -> None:
    from gpusim.sweep.runner import (
        BATCH_TARGET_S,
        MAX_BATCH,
        TRACED_BATCH_TARGET_S,
        PointOutcome,
        _BatchSizer,
    )

    sizer = _BatchSizer(None)
    assert sizer.size() == 1  # nothing measured yet
    point_s = 2.0**-7  # exact sums and means
    for _ in range(3):
        sizer.add(PointOutcome("h", {}, None, None, cpu_s=point_s))
    untraced = int(BATCH_TARGET_S / point_s)
    assert sizer.size() == untraced > 1
    sizer.add(PointOutcome("h", {}, None, {"traceEvents": []}, cpu_s=point_s))
    # a task's traces are held in memory until stored: the shorter target from then on
    assert sizer.size() == int(TRACED_BATCH_TARGET_S / point_s) < untraced
    fast = _BatchSizer(None)
    fast.add(PointOutcome("h", {}, None, None, cpu_s=1e-7))
    assert fast.size() == MAX_BATCH
    assert _BatchSizer(7).size() == 7
