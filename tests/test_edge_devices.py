"""Edge devices (Jetson TX2, Jetson Orin NX 8GB): the CUDA-core GEMM path of a GPU without
tensor cores for a dtype, the workload checks that accept it, and LLM runs end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_scenario

from gpusim import simulate
from gpusim.errors import SimulationError
from gpusim.hardware.rates import GPURates, gpu_rates
from gpusim.kernels.attention import attention_cost
from gpusim.kernels.gemm import executed_path, gemm_cost, gemm_plan
from gpusim.kernels.mainloop import sm_rates
from gpusim.spec.base import Dtype
from gpusim.spec.hardware import MemoryKind
from gpusim.spec.llm import LlmInferenceWorkload
from gpusim.spec.loading import load_profile, load_topology, load_transformer
from gpusim.spec.problems import tensor_dtype_problems
from gpusim.spec.profile import CalibrationProfile, InstructionPath
from gpusim.spec.scenario import Fidelity
from gpusim.spec.workload import GemmOp
from gpusim.units import TFLOPS_to_FLOPps

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [(128, 768, 768), (128, 3072, 768), (1, 50257, 768), (2048, 2048, 2048), (7, 5, 3)]


def _rates(topology: str, profile: str | None = None) -> GPURates:
    topo = load_topology(ROOT / "topologies" / f"{topology}.json")
    prof = load_profile(ROOT / "topologies" / "profiles" / f"{profile or topology}.json")
    return gpu_rates(topo.gpus()[0].model, prof)


@pytest.mark.parametrize("dtype", [Dtype.fp16, Dtype.fp32])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_tx2_gemm_runs_on_cuda_cores_no_faster_than_their_peak(
    shape: tuple[int, int, int], dtype: Dtype
) -> None:
    rates = _rates("jetson_tx2")
    m, n, k = shape
    op = GemmOp(m=m, n=n, k=k, dtype=dtype)  # asks for wgmma: the GPU has no tensor cores
    assert executed_path(op, rates) is InstructionPath.cuda_core
    cost = gemm_cost(op, rates)
    assert cost.name.endswith("_cuda_core")
    assert gemm_plan(op, rates).tile.name.startswith("simt_")
    peak_FLOPps = TFLOPS_to_FLOPps(rates.spec.cuda_core_peak_TFLOPS[dtype])
    efficiency = rates.profile.cuda_core_efficiency.value
    assert cost.compute_time_s >= cost.flops / (peak_FLOPps * efficiency) * (1 - 1e-12)
    assert cost.lower_bound_s == pytest.approx(
        max(cost.flops / peak_FLOPps, cost.hbm_bytes / rates.hbm_nameplate_Bps)
    )


def test_tx2_fp16_runs_at_twice_the_fp32_rate() -> None:
    rates = _rates("jetson_tx2")
    fp16 = sm_rates(rates, InstructionPath.wgmma, Dtype.fp16).mma_FLOPps
    fp32 = sm_rates(rates, InstructionPath.wgmma, Dtype.fp32).mma_FLOPps
    assert fp16 == pytest.approx(2 * fp32)
    assert fp32 == pytest.approx(0.6656e12 * rates.profile.cuda_core_efficiency.value / 2)


def test_large_cuda_core_gemm_approaches_the_fma_bound() -> None:
    """A big square FP32 GEMM on TX2 is FMA-bound: within 10 % of flops / (peak x efficiency)."""
    rates = _rates("jetson_tx2")
    cost = gemm_cost(GemmOp(m=4096, n=4096, k=4096, dtype=Dtype.fp32), rates)
    bound_s = cost.flops / (0.6656e12 * rates.profile.cuda_core_efficiency.value)
    assert bound_s <= cost.compute_time_s <= 1.1 * bound_s


def test_orin_runs_tensor_dtypes_on_tensor_cores_and_fp32_on_cuda_cores() -> None:
    rates = _rates("jetson_orin_nx")
    bf16 = GemmOp(m=512, n=512, k=512, dtype=Dtype.bf16)
    fp32 = GemmOp(m=512, n=512, k=512, dtype=Dtype.fp32)
    assert executed_path(bf16, rates) is InstructionPath.mma_sync
    assert executed_path(fp32, rates) is InstructionPath.cuda_core
    assert sm_rates(rates, InstructionPath.mma_sync, Dtype.bf16).mma_FLOPps == pytest.approx(
        12.534e12 * rates.tensor_efficiency(InstructionPath.mma_sync, Dtype.bf16) / 8
    )


@pytest.mark.parametrize(
    ("topology", "profile", "path"),
    [
        ("h100_pcie_1gpu", "h100_pcie", InstructionPath.wgmma),
        ("a100_pcie_1gpu", "a100", InstructionPath.mma_sync),
        ("gh200_1", "gh200", InstructionPath.wgmma),
    ],
)
def test_tensor_core_gpus_resolve_as_before(
    topology: str, profile: str, path: InstructionPath
) -> None:
    """The MMA rate of a tensor-core GPU is still its tensor peak x tensor_efficiency of its
    native path, bit for bit (the golden snapshots hold the whole results)."""
    rates = _rates(topology, profile)
    for dtype in rates.spec.tensor_peak_TFLOPS:
        op = GemmOp(m=256, n=256, k=256, dtype=dtype)
        assert executed_path(op, rates) is path
        expected = rates.tensor_peak_FLOPps(dtype) * rates.tensor_efficiency(path, dtype)
        assert sm_rates(rates, InstructionPath.wgmma, dtype).mma_FLOPps == expected / (
            rates.sm_count
        )
        assert gemm_cost(op, rates).name.endswith(f"_{path}")


def test_attention_on_tx2_uses_cuda_cores() -> None:
    from gpusim.kernels.attention import AttentionShape

    rates = _rates("jetson_tx2")
    shape = AttentionShape(
        batch=1,
        q_tokens=128,
        kv_tokens=128,
        heads=12,
        kv_heads=12,
        head_dim=64,
        causal=True,
        dtype=Dtype.fp16,
    )
    cost = attention_cost(shape, rates)
    assert cost.lower_bound_s >= shape.flops / TFLOPS_to_FLOPps(1.3312) * (1 - 1e-12)


def test_a_dtype_neither_unit_has_is_refused_naming_both() -> None:
    rates = _rates("jetson_tx2")
    with pytest.raises(SimulationError, match="neither a tensor-core nor a CUDA-core peak"):
        gemm_cost(GemmOp(m=8, n=8, k=8, dtype=Dtype.bf16), rates)
    topo = load_topology(ROOT / "topologies" / "jetson_tx2.json")
    assert list(tensor_dtype_problems(Dtype.fp16, ["gpu0"], topo, ("dtype",))) == []
    ((loc, reason),) = tensor_dtype_problems(Dtype.bf16, ["gpu0"], topo, ("dtype",))
    assert loc == ("dtype",)
    assert "no tensor-core peak for bf16 (it has: none)" in reason
    assert "no CUDA-core peak for it either (it has: fp16, fp32)" in reason


def test_profile_refuses_a_cuda_core_tensor_efficiency() -> None:
    doc = load_profile(ROOT / "topologies" / "profiles" / "jetson_tx2.json").model_dump()
    doc["tensor_efficiency"] = {"cuda_core": {"fp16": {"value": 0.5, "source": "test"}}}
    with pytest.raises(ValueError, match="no cuda_core path"):
        CalibrationProfile.model_validate(doc)


def _llm_prefill(topology: str, model: str, dtype: Dtype, fidelity: Fidelity) -> dict[str, float]:
    topo = load_topology(ROOT / "topologies" / f"{topology}.json")
    prof = load_profile(ROOT / "topologies" / "profiles" / f"{topology}.json")
    wl = LlmInferenceWorkload(
        model=load_transformer(model), batch=1, prompt_tokens=128, phase="prefill", dtype=dtype
    )
    assert list(wl.check(topo)) == []
    return simulate(make_scenario(wl, topology=topo, profile=prof, fidelity=fidelity)).metrics


def test_gpt2_fp16_prefill_on_tx2_both_fidelities() -> None:
    des = _llm_prefill("jetson_tx2", "gpt2", Dtype.fp16, Fidelity.des)
    analytic = _llm_prefill("jetson_tx2", "gpt2", Dtype.fp16, Fidelity.analytic)
    assert des["prefill_latency_s"] == pytest.approx(analytic["prefill_latency_s"], rel=1e-6)
    # the LM head alone (768 x 50257 over 128 tokens) at the CUDA-core FP16 rate
    rates = _rates("jetson_tx2")
    head_s = 2 * 128 * 768 * 50257 / (1.3312e12 * rates.profile.cuda_core_efficiency.value)
    assert des["matmul_time_s"] > head_s
    assert des["prefill_latency_s"] > des["matmul_time_s"]


def test_llama_1b_prefill_on_orin_nx() -> None:
    des = _llm_prefill("jetson_orin_nx", "llama-3.2-1b", Dtype.bf16, Fidelity.des)
    analytic = _llm_prefill("jetson_orin_nx", "llama-3.2-1b", Dtype.bf16, Fidelity.analytic)
    assert des["prefill_latency_s"] == pytest.approx(analytic["prefill_latency_s"], rel=1e-6)
    assert des["hbm_required_B"] < 8e9


def test_device_memory_point_of_a_unified_gpu_fits_its_pool_kind(tmp_path: Path) -> None:
    """A device_read_GBps point on a Jetson informs memory_efficiency.lpddr (the GPU's memory
    kind), not .hbm."""
    import json

    from gpusim.calibrate.fit import fit_folder
    from gpusim.calibrate.nameplates import Nameplates

    folder = ROOT / "results" / "calibration" / "published" / "jetson_orin_nx"
    doc = json.loads((folder / "assumptions.json").read_text())
    doc["measurements"] = [m for m in doc["measurements"] if m["name"] != "memory_efficiency.lpddr"]
    (tmp_path / "assumptions.json").write_text(json.dumps(doc))
    stats = {"median": 81.92, "mean": 81.92, "stdev": 0.0, "min": 81.92, "max": 81.92}
    point = {
        "name": "device_read_GBps",
        "unit": "GB/s",
        "stats": stats | {"p10": 81.92, "p90": 81.92, "n": 1},
        "source": "test: 80 % of 102.4 GB/s",
    }
    memory = {"schema": "gpusim.kernels_ref.v1", "program": "memory", "status": "ok"}
    (tmp_path / "memory.json").write_text(json.dumps(memory | {"measurements": [point]}))
    topo = load_topology(ROOT / "topologies" / "jetson_orin_nx.json")
    report = fit_folder(tmp_path, Nameplates.from_topology(topo))
    assert report.profile.memory_efficiency[MemoryKind.lpddr].value == pytest.approx(0.8)
    assert MemoryKind.hbm not in report.profile.memory_efficiency


def test_cuda_core_path_forced_on_a_dtype_only_tensor_cores_have() -> None:
    rates = _rates("h100_pcie_1gpu", "h100_pcie")
    op = GemmOp(m=64, n=64, k=64, dtype=Dtype.fp32, path=InstructionPath.cuda_core)
    assert gemm_cost(op, rates).name.endswith("_cuda_core")
    forced = GemmOp(m=64, n=64, k=64, dtype=Dtype.bf16, path=InstructionPath.cuda_core)
    with pytest.raises(SimulationError, match="has no CUDA-core peak for bf16"):
        gemm_cost(forced, rates)
