"""The calibration pipeline: synthetic measurements from known parameters are fitted back, the
uncertainty behaves, bad input is one line and writes nothing, and the shipped profiles are what
the pipeline makes of the published data."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from gpusim.calibrate.fit import FitReport, fit_folder
from gpusim.calibrate.model import Observation, ParamValues
from gpusim.calibrate.nameplates import NameplateError, Nameplates
from gpusim.calibrate.params import all_paths, flatten, profile_document
from gpusim.calibrate.solve import FitPoint, fit_group
from gpusim.cli import app
from gpusim.errors import SpecError
from gpusim.hardware.platform import Platform
from gpusim.kernels import kernel_costs
from gpusim.spec.hardware import GPUSpec
from gpusim.spec.loading import load_model, load_topology
from gpusim.spec.profile import Measured, SparseCosts
from gpusim.spec.refs import SHIPPED_DIRS, data_root
from gpusim.spec.workload import SpmmOp

ROOT = data_root()
PUBLISHED = ROOT / "results" / "calibration" / "published"
TOPOLOGIES = ROOT / SHIPPED_DIRS["topology"]
HGX = TOPOLOGIES / "hgx_h100_8gpu.json"
runner = CliRunner()

# Nameplates of the H100 SXM5 in hgx_h100_8gpu (topologies/components/gpu/h100_sxm5.json and the
# topology's links), written out so that the expected measurements below are closed forms.
HBM_GBPS, PCIE_GBPS, NVLINK_GBPS, FP16_PEAK_TFLOPS = 3350.0, 63.0, 450.0, 989.4
GiB = 2**30

TRUE = {
    "launch.launch_api_us": 2.0,
    "launch.doorbell_to_start_us": 0.6,
    "launch.kernel_floor_us": 1.2,
    "launch.graph_launch_per_kernel_us": 1.5,
    "launch.sync_return_us": 4.0,
    "memory_efficiency.hbm": 0.9,
    "link_efficiency.pcie": 0.8,
    "link_efficiency.nvlink": 0.85,
    "device.flag_handoff_ns": 150.0,
    "device.scheduler_ns_per_task": 35.0,
    "tensor_efficiency.wgmma.fp16": 0.75,
    # an L2 too fast to bind, so that the tile points below are MMA-bound closed forms
    "memory_hierarchy.l2_near_read_GBps": 50_000.0,
}
"""The parameters the synthetic kernels_ref run is generated from."""

# Every other value an hgx_h100_8gpu profile needs, given by the assumptions document.
GIVEN = {
    "link_efficiency.socket": 0.8,
    "memory_efficiency.ddr": 0.8,
    "cuda_core_efficiency": 0.7,
    "launch.framework_op_us": 2.0,
    "host.reduction_op_us": 2.0,
    "host.indexing_op_us": 2.0,
    "host.view_op_us": 2.0,
    "host.autograd_op_us": 1.0,
    "host.python_step_us": 1.0,
    "host.cublas_call_us": 3.0,
    "host.collective_call_us": 5.0,
    "host.graph_launch_us": 2.5,
    "host.launch_queue_depth": 1024.0,
    "device.grid_barrier_us": 2.0,
    "device.task_latency_ns": 600.0,
    "device.subscriber_ns_per_task": 10.0,
    "device.nccl_sms": 16.0,
    **{p: 1.0 for p in all_paths() if p.startswith("nccl.")},
    **{
        f"tensor_efficiency.{p}.{d}": 0.5
        for p in ("wgmma", "mma_sync")
        for d in ("tf32", "fp16", "bf16", "fp8")
        if (p, d) != ("wgmma", "fp16")
    },
    "memory_hierarchy.l2_whole_read_GBps": 40_000.0,
    "memory_hierarchy.l2_hit_latency_ns": 200.0,
    "memory_hierarchy.hbm_load_latency_ns": 300.0,
}


def _stats(samples: list[float]) -> dict[str, Any]:
    a = np.asarray(samples)
    return {
        "median": float(np.median(a)),
        "mean": float(a.mean()),
        "stdev": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "min": float(a.min()),
        "max": float(a.max()),
        "p10": float(np.percentile(a, 10)),
        "p90": float(np.percentile(a, 90)),
        "n": int(a.size),
    }


def _measurement(
    name: str,
    unit: str,
    value: float,
    rng: np.random.Generator | None,
    noise: float = 0.02,
    samples: int = 16,
    **params: Any,
) -> dict[str, Any]:
    """``samples`` draws of ``value`` with lognormal noise (none without ``rng``)."""
    draws = [value] if rng is None else list(value * np.exp(rng.normal(0, noise, samples)))
    m: dict[str, Any] = {"name": name, "unit": unit, "params": params, "stats": _stats(draws)}
    if rng is not None:
        m["samples"] = draws
    return m


def _document(program: str, measurements: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"schema": "gpusim.kernels_ref.v1", "program": program, "status": "ok"}
    if program != "assumptions":
        doc["device"] = {
            "name": "NVIDIA H100 80GB HBM3",
            "sm_count": 132,
            "compute_capability": "9.0",
        }
        doc["run"] = {
            "host": "test",
            "timestamp_utc": "2025-07-01T12:00:00Z",
            "warmup": 10,
            "repetitions": 16,
        }
    return {**doc, **extra, "measurements": measurements}


def _assumptions(values: dict[str, float]) -> dict[str, Any]:
    ms = []
    for path, value in values.items():
        m = _measurement(path, "x", value, None)
        m["source"] = "ASSUMPTION: test value"
        ms.append(m)
    return _document("assumptions", ms)


def _write(folder: Path, name: str, doc: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def _synthetic_run(seed: int) -> dict[str, list[dict[str, Any]]]:
    """A kernels_ref run on hgx_h100_8gpu generated from TRUE (expected values in closed form)."""
    rng = np.random.default_rng(seed)
    t = TRUE
    launch = [
        _measurement("launch_api_us", "us", t["launch.launch_api_us"], rng),
        _measurement("launch_to_start_us", "us", 2.0 + 0.6, rng),
        _measurement("null_kernel_us", "us", 1.2, rng),
        _measurement("stream_issue_interval_us", "us", max(2.0, 1.2), rng, kernels=1000),
        _measurement("stream_interval_us", "us", 1.2, rng, kernels=1000, prequeued=True),
        _measurement("graph_interval_us", "us", max(1.5, 1.2), rng, kernels=1000),
        _measurement("sync_round_trip_us", "us", 2.0 + 0.6 + 1.2 + 4.0, rng),
        _measurement("host_flag_one_way_us", "us", 0.8, rng),
        # names only kernels_ref's launch program prints
        _measurement("launch_return_to_start_us", "us", 0.6, rng),
        _measurement("launch_to_flag_us", "us", 3.4, rng),
        _measurement("graph_launch_api_us", "us", 2.5, rng, kernels=1),
    ]
    memory = [
        _measurement("device_copy_GBps", "GB/s", 0.9 * HBM_GBPS, rng, bytes=size)
        for size in (1 * GiB, 2 * GiB, 4 * GiB)
    ]
    memory += [
        _measurement("device_read_GBps", "GB/s", 0.9 * HBM_GBPS, rng, bytes=2 * GiB),
        # L2-resident (8 MiB fits one 25 MB partition): the near L2 rate
        _measurement("device_read_GBps", "GB/s", 50_000.0, rng, bytes=8 * 2**20),
        _measurement("h2d_GBps", "GB/s", 0.8 * PCIE_GBPS, rng, bytes=GiB, pinned=True),
        _measurement("d2h_GBps", "GB/s", 0.8 * PCIE_GBPS, rng, bytes=GiB, pinned=True),
        _measurement("h2d_GBps", "GB/s", 20.0, rng, bytes=GiB, pinned=False),  # pageable
        _measurement("p2p_copy_GBps", "GB/s", 0.85 * NVLINK_GBPS, rng, src=0, dst=1, bytes=GiB),
        _measurement("p2p_store_GBps", "GB/s", 0.85 * NVLINK_GBPS, rng, src=2, dst=5, bytes=GiB),
    ]
    flags = [
        _measurement("flag_handoff_ns", "ns", 150.0, rng, scope="gpu"),
        _measurement("flag_handoff_ns", "ns", 36.0, rng, scope="cta"),
        _measurement("flag_handoff_ns", "ns", 900.0, rng, scope="system"),
        _measurement("flag_handoff_hostmem_ns", "ns", 800.0, rng, scope="system"),
    ]
    tile = [
        _measurement(
            "tile_tflops",
            "TFLOP/s",
            value,
            rng,
            path="wgmma",
            dtype="fp16",
            blocks_per_sm=blocks,
            k=4096,
            tile_m=128,
            tile_n=128,
            tile_k=64,
        )
        # MMA-bound at both occupancies (the L2 is too fast to bind): the same issue rate
        for blocks, value in ((1, 0.75 * FP16_PEAK_TFLOPS), (2, 0.75 * FP16_PEAK_TFLOPS))
    ]
    persistent = [_measurement("scheduler_ns_per_task", "ns", 35.0, rng, tasks=4096, blocks=264)]
    return {
        "launch": launch,
        "memory": memory,
        "flags": flags,
        "tile_gemm": tile,
        "persistent_moe": persistent,
    }


def _fit_synthetic(
    tmp_path: Path, run: dict[str, list[dict[str, Any]]], **given: float
) -> FitReport:
    for program, ms in run.items():
        _write(tmp_path, f"{program}.json", _document(program, ms))
    _write(tmp_path, "assumptions.json", _assumptions({**GIVEN, **given}))
    return fit_folder(tmp_path, Nameplates.from_topology(load_topology(HGX)))


def test_synthetic_run_is_fitted_back(tmp_path: Path) -> None:
    """Each parameter comes back within 3 % of the value the data was generated from (2 % noise
    on 16 samples per point), and within four of its own reported standard errors."""
    report = _fit_synthetic(tmp_path, _synthetic_run(seed=7))
    values = flatten(report.profile)
    for path, true in TRUE.items():
        fitted = values[path]
        assert fitted.uncertainty is not None and fitted.uncertainty > 0, path
        error = abs(fitted.value - true)
        assert error <= 0.03 * true or path == "launch.doorbell_to_start_us", (path, fitted.value)
        assert error <= 4 * fitted.uncertainty, (path, fitted.value, fitted.uncertainty)
    # the doorbell is a difference (2.6 - 2.0): it inherits both points' absolute errors
    assert values["launch.doorbell_to_start_us"].value == pytest.approx(0.6, abs=0.05)
    assert values["device.nccl_sms"].source == "given: ASSUMPTION: test value"
    source = values["memory_efficiency.hbm"].source
    assert "measured by memory on NVIDIA H100 80GB HBM3, 2025-07-01, 4 points" in source
    assert "x 3350 GB/s" in source


def test_points_that_inform_nothing_are_reported_not_fitted(tmp_path: Path) -> None:
    report = _fit_synthetic(tmp_path, _synthetic_run(seed=7))
    reasons = {(u.where.measurement.name, u.reason.split(":")[0]) for u in report.unused}
    names = [name for name, _ in reasons]
    assert sorted(names) == sorted(
        [
            "host_flag_one_way_us",
            "launch_to_flag_us",
            "graph_launch_api_us",
            "h2d_GBps",
            "flag_handoff_ns",  # scope cta
            "flag_handoff_ns",  # scope system
            "flag_handoff_hostmem_ns",
        ]
    )
    assert report.points == 28 - len(report.unused)


def _hbm_fit(tmp_path: Path, points: int, stated: bool, seed: int = 3) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    run = _synthetic_run(seed)
    if stated:  # kernels_ref points: samples, so a standard error of the median each
        memory = [
            _measurement("device_copy_GBps", "GB/s", 0.9 * HBM_GBPS, rng, bytes=GiB + i)
            for i in range(points)
        ]
    else:  # single published numbers with 2 % scatter: only the residuals tell the spread
        memory = [
            _measurement("device_copy_GBps", "GB/s", 0.9 * HBM_GBPS * math.exp(e), None)
            for e in rng.normal(0, 0.02, points)
        ]
    others = [  # links and the L2-resident read
        m
        for m in run["memory"]
        if not m["name"].startswith("device_") or m["params"]["bytes"] < 2**30
    ]
    run["memory"] = memory + others
    fitted = flatten(_fit_synthetic(tmp_path, run).profile)["memory_efficiency.hbm"]
    assert fitted.uncertainty is not None
    return fitted.value, fitted.uncertainty


@pytest.mark.parametrize("stated", [True, False], ids=["stated", "residual"])
def test_uncertainty_shrinks_with_more_points(tmp_path: Path, stated: bool) -> None:
    """16x the points: about a quarter of the standard error (at least halved here)."""
    few_value, few = _hbm_fit(tmp_path / "few", 3, stated)
    many_value, many = _hbm_fit(tmp_path / "many", 48, stated)
    assert many < few / 2
    assert many_value == pytest.approx(0.9, abs=4 * many)
    assert few_value == pytest.approx(0.9, abs=4 * few)


def test_single_point_gets_its_own_uncertainty(tmp_path: Path) -> None:
    run = _synthetic_run(seed=1)
    point = _measurement("nccl_bus_GBps", "GB/s", 370.0, None, link="nvlink")
    point["uncertainty"] = 13.5
    run["memory"] = [m for m in run["memory"] if not m["name"].startswith("p2p")] + [point]
    fitted = flatten(_fit_synthetic(tmp_path, run).profile)["link_efficiency.nvlink"]
    assert fitted.value == pytest.approx(370 / 450, rel=1e-6)
    assert fitted.uncertainty == pytest.approx(13.5 / 450, rel=1e-6)


def test_a_point_below_the_sensitivity_tolerance_passes_no_variance() -> None:
    """``floor`` rests on an unstated point (exactly determined: no uncertainty); a stated point
    on ``doorbell`` moves it by 3e-9 of itself (below SENSITIVITY_TOL), which must not pass it
    that point's variance: rounding residue of that size differs between numpy/BLAS builds."""
    floor, doorbell = "launch.kernel_floor_us", "launch.doorbell_to_start_us"

    def first(v: ParamValues, _p: float) -> float:
        return v[floor] * (1.0 + 1e-9 * v[doorbell])

    def second(v: ParamValues, _p: float) -> float:
        return v[doorbell]

    points = [
        FitPoint(Observation(2.0, (floor, doorbell), first, "floor"), None),
        FitPoint(Observation(3.0, (doorbell,), second, "doorbell"), 0.05),
    ]
    fit = fit_group([floor, doorbell], points, {})
    assert fit.dof == 0
    assert fit.estimates[floor].value == pytest.approx(2.0 / (1.0 + 3e-9), rel=1e-12)
    assert fit.estimates[floor].informing == (0,)
    assert fit.estimates[floor].uncertainty is None
    assert fit.estimates[doorbell].uncertainty == pytest.approx(3.0 * 0.05, rel=1e-6)


def test_sparse_extraction_cost_is_fitted_back_from_spmm_times(tmp_path: Path) -> None:
    """Two passes: fit the run without SpMM points, generate spmm_us at three sparsities from
    the LSCD model with the fitted profile and 12 cycles per nonzero, fit again with them: the
    cycles come back and nothing else moves (the points are consistent with the first fit)."""
    run = _synthetic_run(seed=2)
    first = _fit_synthetic(tmp_path / "first", run).profile
    cycles = 12.0
    topology = load_topology(HGX)
    gpu = topology.gpus()[0]
    with_sparse = first.model_copy(
        update={
            "sparse": SparseCosts(extract_cycles_per_nonzero=Measured(value=cycles, source="test"))
        }
    )
    rates = Platform.of(topology, with_sparse).gpu_rates(gpu.id)
    m_rows, k_depth, n_cols = 36864, 9216, 8
    points = []
    for sparsity in (0.7, 0.8, 0.9):
        nnz = round((1 - sparsity) * m_rows * k_depth)
        op = SpmmOp(m=m_rows, k=k_depth, n=n_cols, sparsity=1 - nnz / (m_rows * k_depth))
        time_us = sum(c.time_s for c in kernel_costs(op, rates)) * 1e6
        points.append(
            _measurement("spmm_us", "us", time_us, None, m=m_rows, k=k_depth, n=n_cols, nnz=nnz)
        )
    second = _fit_synthetic(tmp_path / "second", {**run, "spmm": points}).profile
    assert second.sparse is not None
    assert second.sparse.extract_cycles_per_nonzero.value == pytest.approx(cycles, rel=1e-4)
    before, after = flatten(first), flatten(second)
    for path, value in before.items():
        assert after[path].value == pytest.approx(value.value, rel=1e-4), path


def test_uninformed_parameter_without_assumption_is_named(tmp_path: Path) -> None:
    given = dict(GIVEN)
    del given["device.nccl_sms"]
    for program, ms in _synthetic_run(seed=7).items():
        _write(tmp_path, f"{program}.json", _document(program, ms))
    _write(tmp_path, "assumptions.json", _assumptions(given))
    with pytest.raises(SpecError, match=r"no measurement or assumption informs device\.nccl_sms:"):
        fit_folder(tmp_path, Nameplates.from_topology(load_topology(HGX)))


def test_parameters_measured_only_in_combination_are_named(tmp_path: Path) -> None:
    run = _synthetic_run(seed=7)
    run["launch"] = [
        m
        for m in run["launch"]
        if m["name"]
        not in ("launch_api_us", "stream_issue_interval_us", "launch_return_to_start_us")
    ]
    with pytest.raises(SpecError) as info:
        _fit_synthetic(tmp_path, run)
    assert "do not determine launch.launch_api_us, launch.doorbell_to_start_us separately" in str(
        info.value
    )
    # an assumption for one of them makes the other measurable
    launch_api = _fit_synthetic(tmp_path, run, **{"launch.doorbell_to_start_us": 0.6})
    assert flatten(launch_api.profile)["launch.launch_api_us"].value == pytest.approx(2.0, rel=0.03)


# ---- nameplates come from the specs -------------------------------------------------------


def test_host_link_kind_and_nameplate_come_from_the_topology() -> None:
    gh200 = Nameplates.from_topology(load_topology(TOPOLOGIES / "gh200_x4.json"))
    path = gh200.host_path(0, to_gpu=True)
    assert (path.kind.value, path.nameplate_GBps) == ("c2c", 450.0)
    pair = gh200.gpu_pair(0, 1)
    assert (pair.kind.value, pair.nameplate_GBps) == ("nvlink", 150.0)
    hgx = Nameplates.from_topology(load_topology(HGX))
    host = hgx.host_path(None, to_gpu=False)
    assert (host.kind.value, host.nameplate_GBps) == ("pcie", 63.0)
    assert "pcie_sw0" in host.what


def test_links_with_their_own_efficiency_cannot_be_fitted() -> None:
    measured = Nameplates.from_topology(load_topology(TOPOLOGIES / "gh200_1_measured_c2c.json"))
    with pytest.raises(NameplateError, match="own efficiency"):
        measured.host_path(0, to_gpu=True)


def test_gpu_spec_alone_has_no_links() -> None:
    gpu = load_model(GPUSpec, ROOT / SHIPPED_DIRS["gpu"] / "h100_sxm5.json")
    with pytest.raises(NameplateError, match="needs a topology"):
        Nameplates.from_gpu(gpu, "gpu h100_sxm5").host_path(0, to_gpu=True)


# ---- the command line: bad input is one line, and nothing is written ---------------------


def _fit_cli(folder: Path, output: Path, *extra: str) -> Any:
    return runner.invoke(
        app, ["calibrate", "fit", str(folder), "-o", str(output), "--topology", str(HGX), *extra]
    )


def _fails_one_line(folder: Path, tmp_path: Path) -> str:
    output = tmp_path / "profile.json"
    result = _fit_cli(folder, output)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert not output.exists()
    return str(lines[0])


def _good_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    for program, ms in _synthetic_run(seed=7).items():
        _write(folder, f"{program}.json", _document(program, ms))
    _write(folder, "assumptions.json", _assumptions(GIVEN))
    return folder


def test_cli_fit_writes_the_profile(tmp_path: Path) -> None:
    folder = _good_folder(tmp_path)
    output = tmp_path / "profile.json"
    result = _fit_cli(folder, output, "--id", "synthetic", "--description", "test run")
    assert result.exit_code == 0, result.output
    written = json.loads(output.read_text())
    assert (written["id"], written["description"]) == ("synthetic", "test run")
    assert written["memory_efficiency"]["hbm"]["value"] == pytest.approx(0.9, rel=0.03)
    assert "not used (1): host_flag_one_way_us" in result.output


def test_cli_truncated_document(tmp_path: Path) -> None:
    folder = _good_folder(tmp_path)
    text = (folder / "memory.json").read_text()
    _write(folder, "memory.json", text[: len(text) // 2])
    line = _fails_one_line(folder, tmp_path)
    assert line.startswith(f"error: {folder / 'memory.json'}: $: malformed JSON at line")


def test_cli_wrong_schema_id(tmp_path: Path) -> None:
    folder = _good_folder(tmp_path)
    doc = json.loads((folder / "flags.json").read_text())
    doc["schema"] = "gpusim.kernels_ref.v0"
    _write(folder, "flags.json", doc)
    assert f"{folder / 'flags.json'}: $.schema:" in _fails_one_line(folder, tmp_path)


def test_cli_unknown_measurement_name(tmp_path: Path) -> None:
    folder = _good_folder(tmp_path)
    doc = json.loads((folder / "flags.json").read_text())
    doc["measurements"][1]["name"] = "flag_handof_ns"
    _write(folder, "flags.json", doc)
    line = _fails_one_line(folder, tmp_path)
    assert line.endswith(
        f"{folder / 'flags.json'}: $.measurements[1].name: unknown measurement name "
        "'flag_handof_ns'"
    )


def test_cli_missing_parameter_is_named(tmp_path: Path) -> None:
    folder = _good_folder(tmp_path)
    doc = json.loads((folder / "memory.json").read_text())
    index = next(i for i, m in enumerate(doc["measurements"]) if m["name"] == "p2p_copy_GBps")
    del doc["measurements"][index]["params"]["dst"]
    _write(folder, "memory.json", doc)
    line = _fails_one_line(folder, tmp_path)
    assert f"$.measurements[{index}].params: p2p_copy_GBps needs parameter 'dst'" in line


def test_cli_no_device_only(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    for program in ("launch", "memory"):
        doc = {
            "schema": "gpusim.kernels_ref.v1",
            "program": program,
            "status": "no_device",
            "message": "no CUDA device",
        }
        _write(folder, f"{program}.json", doc)
    line = _fails_one_line(folder, tmp_path)
    assert line.endswith(
        f"{folder}: $: no measurements: every document in {folder} has status no_device (no GPU)"
    )


def test_cli_failed_program(tmp_path: Path) -> None:
    folder = _good_folder(tmp_path)
    _write(folder, "spmm.json", {**_document("spmm", []), "status": "error", "message": "OOM"})
    assert _fails_one_line(folder, tmp_path).endswith("$.status: the program failed: OOM")


def test_cli_missing_assumption(tmp_path: Path) -> None:
    folder = _good_folder(tmp_path)
    given = dict(GIVEN)
    del given["link_efficiency.socket"]
    _write(folder, "assumptions.json", _assumptions(given))
    assert "informs link_efficiency.socket:" in _fails_one_line(folder, tmp_path)


def test_cli_show_prints_the_table() -> None:
    result = runner.invoke(app, ["calibrate", "show", "h100_sxm"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "profile h100_sxm" in result.output
    row = next(ln for ln in result.output.splitlines() if "launch.kernel_floor_us" in ln)
    assert "1.2352" in row and "us" in row and "published: SK-5 (H100 PCIe value" in row
    assert "[unverified]" in result.output  # sources are text, not rich markup
    nvlink = next(ln for ln in result.output.splitlines() if "link_efficiency.nvlink" in ln)
    assert "0.822222" in nvlink and "0.03" in nvlink and "fraction" in nvlink


def test_cli_show_bad_profile(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.json", "{")
    result = runner.invoke(app, ["calibrate", "show", str(path)])
    assert result.exit_code == 2
    assert f"{path}: $: malformed JSON" in result.output


# ---- the shipped profiles are the pipeline's output ---------------------------------------

SHIPPED_FITS = {
    "h100_sxm": "h100_2node_ib",
    "h100_pcie": "h100_pcie_2gpu",
    "gh200": "gh200_x4",
    "a100": "a100_sxm4_8gpu",
    "jetson_tx2": "jetson_tx2",
    "jetson_orin_nx": "jetson_orin_nx",
}
"""Profile -> topology whose nameplates its published data is fitted against (the commands are in
docs/calibration.md)."""


def _values_close(fitted: Any, shipped: Any, where: str = "$") -> None:
    if isinstance(shipped, dict):
        assert isinstance(fitted, dict) and fitted.keys() == shipped.keys(), where
        for key in shipped:
            _values_close(fitted[key], shipped[key], f"{where}.{key}")
    elif isinstance(shipped, float) and not isinstance(shipped, bool):
        assert fitted == pytest.approx(shipped, rel=1e-6), where
    else:
        assert fitted == shipped, where


@pytest.mark.parametrize("profile_id", sorted(SHIPPED_FITS))
def test_shipped_profile_is_the_fit_of_its_published_data(profile_id: str) -> None:
    """Regenerate: gpusim calibrate fit results/calibration/published/ID --topology TOPOLOGY
    -o topologies/profiles/ID.json"""
    topology = load_topology(TOPOLOGIES / f"{SHIPPED_FITS[profile_id]}.json")
    report = fit_folder(PUBLISHED / profile_id, Nameplates.from_topology(topology))
    shipped = json.loads((ROOT / SHIPPED_DIRS["profile"] / f"{profile_id}.json").read_text())
    _values_close(profile_document(report.profile), shipped)
    assert not report.unused and not report.warnings


def test_every_published_folder_has_a_shipped_profile() -> None:
    assert {p.name for p in PUBLISHED.iterdir() if p.is_dir()} == set(SHIPPED_FITS)


def test_run_summary_beside_the_documents_is_not_a_document(tmp_path: Path) -> None:
    from gpusim.calibrate.document import RUN_SCHEMA_ID

    _write(tmp_path, "run.json", {"schema": RUN_SCHEMA_ID, "programs": []})
    _write(
        tmp_path,
        "launch.json",
        {
            "schema": "gpusim.kernels_ref.v1",
            "program": "launch",
            "status": "no_device",
            "message": "no GPU",
        },
    )
    with pytest.raises(SpecError, match=r"every document in .* has status no_device"):
        fit_folder(tmp_path, Nameplates.from_topology(load_topology(HGX)))
