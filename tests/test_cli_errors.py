"""Bad input: every mistake is one line on stderr naming the file, the JSON path and the reason,
exit code 2, no traceback and no output written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import make_profile, make_star_topology
from typer.testing import CliRunner

from gpusim.cli import app

runner = CliRunner()


def _scenario_doc() -> dict[str, Any]:
    return {
        "name": "bad-input-test",
        "topology": make_star_topology(2).model_dump(mode="json"),
        "workload": {
            "kind": "transfers",
            "transfers": [{"src": "gpu0", "dst": "gpu1", "bytes": 1000}],
        },
        "profile": make_profile().model_dump(mode="json"),
    }


def _write(tmp_path: Path, doc: Any, name: str = "scenario.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def _run_fails(args: list[str], tmp_path: Path) -> str:
    out_dir = tmp_path / "out"
    result = runner.invoke(app, [*args, "-o", str(out_dir)] if args[0] == "run" else args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not out_dir.exists()
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_valid_scenario_runs(tmp_path: Path) -> None:
    path = _write(tmp_path, _scenario_doc())
    out_dir = tmp_path / "out"
    result = runner.invoke(app, ["run", str(path), "-o", str(out_dir)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["scenario"] == "bad-input-test"


def _mutate(doc: dict[str, Any], dotted: str, value: Any) -> None:
    node: Any = doc
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    node[int(parts[-1]) if isinstance(node, list) else parts[-1]] = value


@pytest.mark.parametrize(
    ("dotted", "value", "expect_path", "expect_reason"),
    [
        ("workload.bandwidth", 3, "$.workload.bandwidth", "Extra inputs are not permitted"),
        (
            "topology.links.1.bw_a_to_b_GBps",
            -5,
            "$.topology.links[1].bw_a_to_b_GBps",
            "greater than 0",
        ),
        ("topology.links.0.b", "nowhere", "$.topology.links[0].b", "dangling"),
        ("workload.transfers.0.dst", "gpu9", "$.workload.transfers[0].dst", "unknown device"),
        ("topology.devices.2.host", "sw", "$.topology.devices[2].host", "not a cpu"),
    ],
)
def test_bad_field_names_file_path_and_reason(
    tmp_path: Path, dotted: str, value: Any, expect_path: str, expect_reason: str
) -> None:
    doc = _scenario_doc()
    _mutate(doc, dotted, value)
    path = _write(tmp_path, doc)
    line = _run_fails(["run", str(path)], tmp_path)
    assert str(path) in line
    assert expect_path in line
    assert expect_reason in line


def test_disconnected_topology(tmp_path: Path) -> None:
    doc = _scenario_doc()
    links = doc["topology"]["links"]
    doc["topology"]["links"] = [lk for lk in links if lk["a"] != "gpu1"]
    line = _run_fails(["run", str(_write(tmp_path, doc))], tmp_path)
    assert "$.topology.links" in line and "disconnected" in line and "gpu1" in line


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    line = _run_fails(["run", str(missing)], tmp_path)
    assert str(missing) in line and "$" in line and "not found" in line


def test_malformed_json(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"name": "x",\n  "topology": [1, 2,,]}')
    line = _run_fails(["run", str(path)], tmp_path)
    assert str(path) in line and "malformed JSON at line 2" in line


def test_error_in_referenced_file_names_that_file(tmp_path: Path) -> None:
    doc = _scenario_doc()
    topo = doc.pop("topology")
    topo["links"][0]["latency_ns"] = 0
    _write(tmp_path, topo, "topo.json")
    doc["topology"] = "topo.json"
    line = _run_fails(["run", str(_write(tmp_path, doc))], tmp_path)
    assert str(tmp_path / "topo.json") in line
    assert "$.links[0].latency_ns" in line


def test_unknown_override_path(tmp_path: Path) -> None:
    path = _write(tmp_path, _scenario_doc())
    line = _run_fails(["run", str(path), "--set", "workload.nothing.here=3"], tmp_path)
    assert "$.workload.nothing" in line and "not permitted" in line and "override" in line


def test_override_to_bad_value_is_blamed(tmp_path: Path) -> None:
    path = _write(tmp_path, _scenario_doc())
    line = _run_fails(["run", str(path), "--set", "options.fidelity=exact"], tmp_path)
    assert "$.options.fidelity" in line and "override" in line


def test_check_reports_bad_file(tmp_path: Path) -> None:
    doc = _scenario_doc()
    doc["options"] = {"seed": "abc"}
    line = _run_fails(["check", str(_write(tmp_path, doc))], tmp_path)
    assert "$.options.seed" in line


def test_real_process_exit_code_and_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gpusim", "run", str(tmp_path / "missing.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.count("\n") == 1


def test_brackets_in_an_error_are_printed_literally(tmp_path: Path) -> None:
    doc = _scenario_doc()
    doc["topology"] = "[bold]nowhere"  # rich would take the brackets for a style
    line = _run_fails(["run", str(_write(tmp_path, doc))], tmp_path)
    assert "[bold]nowhere" in line


def test_check_names_the_problem_in_a_measurement_document(tmp_path: Path) -> None:
    doc = {"schema": "gpusim.kernels_ref.v1", "program": "launch", "status": "ok"}  # no device
    line = _run_fails(["check", str(_write(tmp_path, doc, "launch.json"))], tmp_path)
    assert "launch.json: $: " in line and "must name its device" in line


def _megatron_doc(strategy: dict[str, Any]) -> dict[str, Any]:
    doc = _scenario_doc()
    doc["workload"] = {
        "kind": "moe_layer",
        "tokens_per_gpu": 128,
        "hidden": 256,
        "intermediate": 256,
        "experts": 4,
        "strategy": {"name": "megatron", **strategy},
    }
    return doc


@pytest.mark.parametrize(
    ("strategy", "where", "reason"),
    [
        ({"dispatcher": "ring"}, "$.workload.strategy.dispatcher", "'allgather' or 'alltoall'"),
        ({"backend": "cuda"}, "$.workload.strategy.backend", "'grouped_gemm', 'te'"),
        ({"variant": "te", "backend": "grouped_gemm"}, "$.workload.strategy", "contradicts"),
        ({"forward": "eval"}, "$.workload.strategy.forward", "'training' or 'inference'"),
    ],
)
def test_unknown_megatron_dispatcher_or_backend_is_one_line(
    tmp_path: Path, strategy: dict[str, Any], where: str, reason: str
) -> None:
    path = _write(tmp_path, _megatron_doc(strategy))
    line = _run_fails(["run", str(path)], tmp_path)
    assert str(path) in line and f"{where}:" in line and reason in line, line
