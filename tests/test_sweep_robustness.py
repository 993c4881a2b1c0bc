"""What survives a killed or interrupted sweep, damaged results, and what every run leaves behind:
workers that die with their parent, a killed sweep that resumes exactly, Ctrl-C that stops at
once and keeps what finished, results that do not read recomputed with a warning, error records
with their traceback, files with the usual permissions and a summary.json that is the same bytes
on every run."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from conftest import (
    finished_points,
    make_h100_spec,
    make_profile,
    make_star_topology,
    wait_for_points,
)
from typer.testing import CliRunner

from gpusim.cli import app
from gpusim.sweep import ResultStore
from gpusim.sweep.expand import Point, iter_points
from gpusim.sweep.runner import run_sweep
from gpusim.sweep.spec import load_sweep

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def _slow_sweep(tmp_path: Path, points: int = 40) -> Path:
    """A sweep whose points take a noticeable fraction of a second each (DES, many messages)."""
    base: dict[str, Any] = {
        "name": "slow",
        "topology": make_star_topology(4).model_dump(mode="json"),
        "workload": {
            "kind": "gemm_alltoall",
            "gemm": {"m": 1024, "n": 1024, "k": 1024},
            "messages_per_peer": 200,
        },
        "profile": make_profile().model_dump(mode="json"),
        "options": {"fidelity": "des"},
    }
    doc = {
        "name": "slow",
        "base": base,
        "axes": {"workload.gemm.m": list(range(256, 256 + 64 * points, 64))},
    }
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(doc))
    return path


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(entry.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start(path: Path, out: Path, workers: int = 2) -> subprocess.Popen[str]:
    cmd = [
        sys.executable,
        "-m",
        "gpusim",
        "sweep",
        str(path),
        "-o",
        str(out),
        "--workers",
        str(workers),
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _all_finished_read(out: Path) -> None:
    """Every stored file reads whole, and no temporary file is left where a reader looks."""
    assert ResultStore(out).unreadable_shards() == []
    for folder in (out, out / "failed", out / "traces"):
        assert not list(folder.glob(".*")), folder


def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = _slow_sweep(tmp_path)
    proc = _start(path, out)
    wait_for_points(out, 2)
    workers = _children(proc.pid)
    assert workers, "no worker process found"
    proc.kill()  # SIGKILL: the parent cannot clean up
    proc.communicate(timeout=30)
    assert _wait_gone(workers, 5.0) == [], "worker processes outlived their parent"
    kept = finished_points(out)  # the record as the kill left it, not compacted
    assert 2 <= len(kept) < 40 and (out / "results.jsonl").stat().st_size > 0
    # the rerun resumes exactly: what finished is kept as it was, each point stored once
    again = runner.invoke(app, ["sweep", str(path), "-o", str(out), "--workers", "2"])
    assert again.exit_code == 0, again.output
    assert f"{len(kept)} already stored" in again.output
    assert f"{40 - len(kept)} computed" in again.output
    _all_finished_read(out)
    after = finished_points(out)
    assert len(after) == 40 and all(after[h] == record for h, record in kept.items())
    assert (out / "results.jsonl").read_text() == ""  # compacted into rows.parquet
    assert pq.read_table(out / "rows.parquet").num_rows == 40


def test_ctrl_c_stops_at_once_keeps_what_finished_and_resumes(tmp_path: Path) -> None:
    path = _slow_sweep(tmp_path)
    out = tmp_path / "out"
    proc = _start(path, out)
    wait_for_points(out, 3)
    workers = _children(proc.pid)
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)  # the parent alone, as `kill -INT` would
    _, stderr = proc.communicate(timeout=30)
    # within a second (about 0.4 s measured), with a margin for a loaded machine
    assert time.monotonic() - t0 < 2.0, "Ctrl-C took more than a second or two"
    assert proc.returncode != 0 and "rerun" in stderr and "Traceback" not in stderr
    assert _wait_gone(workers, 2.0) == []
    _all_finished_read(out)
    kept = finished_points(out)
    assert 3 <= len(kept) < 40
    again = runner.invoke(app, ["sweep", str(path), "-o", str(out), "--workers", "2"])
    assert again.exit_code == 0, again.output
    assert f"{len(kept)} already stored" in again.output
    rows = ResultStore(out).rows()
    assert len(rows) == 40 and all(r["status"] == "ok" for r in rows)


def test_unreadable_results_are_recomputed_with_a_warning(tmp_path: Path) -> None:
    path = _slow_sweep(tmp_path, points=4)
    out = tmp_path / "out"
    first = runner.invoke(app, ["sweep", str(path), "-o", str(out), "--workers", "1"])
    assert first.exit_code == 0, first.output
    dataset = out / "rows.parquet"
    dataset.write_bytes(dataset.read_bytes()[:40])  # truncated: its 4 points are lost
    report = runner.invoke(app, ["report", str(out), "-o", str(tmp_path / "r.html")])
    assert report.exit_code == 0, report.output
    assert report.stderr.count("does not read") == 1 and "Traceback" not in report.output
    again = runner.invoke(app, ["sweep", str(path), "-o", str(out), "--workers", "1"])
    assert again.exit_code == 0, again.output
    assert again.stderr.count("recomputing") == 1
    assert "4 computed, 0 already stored" in again.output
    _all_finished_read(out)
    assert all(r["status"] == "ok" for r in ResultStore(out).rows())


def _swept_then_emptied(tmp_path: Path) -> tuple[Path, Path, dict[str, dict[str, Any]]]:
    """A finished 3-point sweep whose rows.parquet is then removed: the sweep file, the results
    folder and what was stored."""
    path = _slow_sweep(tmp_path, points=3)
    out = tmp_path / "out"
    assert runner.invoke(app, ["sweep", str(path), "-o", str(out), "--workers", "1"]).exit_code == 0
    stored = finished_points(out)
    (out / "rows.parquet").unlink()
    return path, out, stored


def test_a_record_line_cut_short_is_recomputed(tmp_path: Path) -> None:
    path, out, stored = _swept_then_emptied(tmp_path)
    # as a kill mid-write would leave it: two points in the record, the second cut short
    lines = [json.dumps({"scenario_hash": h, "record": r}) for h, r in stored.items()][:2]
    (out / "results.jsonl").write_text(lines[0] + "\n" + lines[1][:30])
    assert list(finished_points(out)) == list(stored)[:1]
    again = runner.invoke(app, ["sweep", str(path), "-o", str(out), "--workers", "1"])
    assert again.exit_code == 0, again.output
    assert again.stderr.count("recomputing") == 1
    assert "2 computed, 1 already stored" in again.output
    assert set(finished_points(out)) == set(stored)


def test_a_folder_of_one_shard_per_point_resumes(tmp_path: Path) -> None:
    # results folders written before rows.parquet held one Parquet shard per point
    path, out, stored = _swept_then_emptied(tmp_path)
    (out / "shards").mkdir()
    first = next(iter(stored))
    pq.write_table(pa.Table.from_pylist([stored[first]]), out / "shards" / f"{first}.parquet")
    assert finished_points(out) == {first: stored[first]}
    again = runner.invoke(app, ["sweep", str(path), "-o", str(out), "--workers", "1"])
    assert "2 computed, 1 already stored" in again.output
    assert not list((out / "shards").glob("*.parquet"))
    assert finished_points(out)[first] == stored[first]


def test_report_skips_a_trace_that_does_not_read(tmp_path: Path) -> None:
    path = _slow_sweep(tmp_path, points=2)
    doc = json.loads(path.read_text())
    doc["base"]["options"]["trace"] = True
    doc["base"]["workload"]["messages_per_peer"] = 2
    path.write_text(json.dumps(doc))
    out = tmp_path / "out"
    assert runner.invoke(app, ["sweep", str(path), "-o", str(out), "--workers", "1"]).exit_code == 0
    traces = sorted((out / "traces").glob("*.json"))
    assert len(traces) == 2
    for trace in traces:
        trace.write_text('{"traceEvents": [')
    report = runner.invoke(app, ["report", str(out), "-o", str(tmp_path / "r.html")])
    assert report.exit_code == 0, report.output
    assert report.stderr.count("does not read as a trace") == 2
    assert "Traceback" not in report.output


def test_failed_point_keeps_its_traceback(tmp_path: Path) -> None:
    topo = make_star_topology(2, gpu=make_h100_spec())
    profile = make_profile().model_dump(mode="json")
    for by_dtype in profile["tensor_efficiency"].values():
        del by_dtype["fp8"]  # fp8 passes the static checks and fails in the model
    base = {
        "name": "fails",
        "topology": topo.model_dump(mode="json"),
        "workload": {"kind": "gemm_alltoall", "gemm": {"m": 64, "n": 64, "k": 64}},
        "profile": profile,
    }
    doc = {"name": "t", "base": base, "axes": {"workload.gemm.dtype": ["bf16", "fp8"]}}
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "out"
    result = runner.invoke(app, ["sweep", str(path), "-o", str(out), "--workers", "1"])
    assert result.exit_code == 1, result.output
    (record,) = [json.loads(p.read_text()) for p in (out / "failed").glob("*.json")]
    assert "\n" not in record["error"] and "fp8" in record["error"]
    assert record["traceback"].startswith("Traceback") and "fp8" in record["traceback"]


def test_files_get_the_usual_mode_and_summary_is_deterministic(tmp_path: Path) -> None:
    scenario = str(ROOT / "workloads/gh200_c2c_transfers.json")
    old = os.umask(0o022)
    try:
        outs = []
        for name in ("a", "b"):
            out = tmp_path / name
            result = runner.invoke(
                app, ["run", scenario, "-o", str(out), "--set", "options.seed=3"]
            )
            assert result.exit_code == 0, result.output
            outs.append(out)
    finally:
        os.umask(old)
    for out in outs:
        for written in out.iterdir():
            assert stat.S_IMODE(written.stat().st_mode) == 0o644, written
    a, b = ((o / "summary.json").read_bytes() for o in outs)
    assert a == b
    summary = json.loads(a)
    assert "wall_s" not in summary
    assert summary["topology"] and summary["profile_id"]
    assert summary["overrides"] == {"options.seed": 3}
    assert json.loads((outs[0] / "timing.json").read_text())["wall_s"] >= 0


def test_run_says_when_it_replaces_another_scenarios_results(tmp_path: Path) -> None:
    scenario = str(ROOT / "workloads/gh200_c2c_transfers.json")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        first = runner.invoke(app, ["run", scenario])
        assert first.exit_code == 0 and "replacing" not in first.stderr
        second = runner.invoke(app, ["run", scenario, "--set", "options.seed=5"])
        assert second.exit_code == 0 and "replacing" in second.stderr
    finally:
        os.chdir(cwd)


def test_ctrl_c_while_points_are_still_expanding_leaves_a_readable_folder(
    tmp_path: Path,
) -> None:
    # Ctrl-C can arrive before the lazy expansion has produced every point, when the full
    # manifest is not written yet: the folder must still read (the points known so far).
    path = _slow_sweep(tmp_path, points=3)
    sweep = load_sweep(path)
    points = list(iter_points(sweep, path))

    def interrupted_after_two() -> Iterator[Point]:
        yield from points[:2]
        raise KeyboardInterrupt

    store = ResultStore(tmp_path / "out")
    with ThreadPoolExecutor(max_workers=1) as pool:
        outcome = run_sweep(
            interrupted_after_two(),
            store,
            pool,
            manifest_fields={"name": "slow", "description": ""},
        )
    assert outcome.interrupted is not None and "rerun" in outcome.interrupted
    rows = store.rows()
    assert [r["point"] for r in rows] == [0, 1]
