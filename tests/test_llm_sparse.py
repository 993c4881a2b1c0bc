"""Sparse weights in llm_inference (Flash-LLM end to end): the linears become SpMM kernels, the
weights take their Tiled-CSL bytes, a C++ engine fuses Q, K and V, the GPU time splits by
kernel kind, and the spec refuses what Flash-LLM cannot run."""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import make_profile, make_star_topology
from pydantic import ValidationError

from gpusim.engine.sim import Simulation
from gpusim.hardware.node import Node
from gpusim.hardware.platform import Platform
from gpusim.kernels.tiled_csl import encode_counts
from gpusim.result import Outcome
from gpusim.spec.llm import LlmInferenceWorkload
from gpusim.spec.model_zoo import TransformerModel, linear_shapes
from gpusim.spec.profile import Measured, SparseCosts
from gpusim.workloads import llm
from gpusim.workloads.llm.ops import Kernel, OpList
from gpusim.workloads.llm.program import Programs

TOPO = make_star_topology(2)
PROFILE = make_profile().model_copy(
    update={"sparse": SparseCosts(extract_cycles_per_nonzero=Measured(value=10.0, source="test"))}
)
RATES = Platform.of(TOPO, PROFILE).gpu_rates("gpu0")


def opt_like(**kw: object) -> TransformerModel:
    """A small OPT-shaped decoder whose linears are whole Tiled-CSL tiles."""
    base: dict[str, object] = {
        "name": "opt-tiny",
        "source": "test fixture",
        "architecture": "decoder",
        "layers": 2,
        "hidden": 512,
        "heads": 4,
        "kv_heads": 4,
        "ffn": 2048,
        "vocab": 1024,
        "max_positions": 512,
        "activation": "relu",
        "gated_mlp": False,
        "norm": "layernorm",
        "norm_position": "pre",
        "positional": "learned",
        "linear_bias": True,
        "tied_embeddings": True,
    }
    return TransformerModel.model_validate(base | kw)


def workload(**kw: object) -> LlmInferenceWorkload:
    base: dict[str, object] = {
        "model": opt_like(),
        "gpus": ["gpu0"],
        "batch": 8,
        "prompt_tokens": 16,
        "generated_tokens": 2,
        "dtype": "fp16",
        "phase": "both",
        "runtime": "cpp",
        "kv_cache": "static",
        "weights": {"format": "tiled_csl", "sparsity": 0.8},
    }
    return LlmInferenceWorkload.model_validate(base | kw)


def kernels_of_first_pass(wl: LlmInferenceWorkload) -> list[Kernel]:
    programs = Programs(wl, RATES, 1, 16)
    ops = OpList(RATES, wl.dtype, {}, weights=wl.weights)
    from gpusim.workloads.llm.forward import forward_ops

    forward_ops(wl.model, programs.passes[0].shape, ops)
    return [op for op in ops.ops if isinstance(op, Kernel)]


def both(wl: LlmInferenceWorkload) -> tuple[Outcome, Outcome]:
    des = llm.des(Node(TOPO, PROFILE, Simulation()), wl, seed=0)
    return des, llm.analytic(TOPO, PROFILE, wl, seed=0)


def test_sparse_linears_run_flash_llm_and_the_rest_stays_dense() -> None:
    kinds = Counter(k.kind.split("_")[0] for k in kernels_of_first_pass(workload()))
    layers = 2
    # per layer: QKV (fused by the C++ engine), out, fc1, fc2 as LSCD kernels; the LM head dense
    lscd = [k for k in kernels_of_first_pass(workload()) if k.kind.startswith("spmm_lscd")]
    assert len(lscd) == 4 * layers
    assert kinds["gemm"] == 1  # the LM head
    dense = kernels_of_first_pass(workload(weights={"format": "dense"}))
    assert not any(k.kind.startswith("spmm") for k in dense)
    assert sum(k.kind.startswith("gemm_qkv") for k in dense) == layers


def test_a_python_runtime_keeps_separate_q_k_v() -> None:
    wl = workload(runtime="pytorch_eager", kv_cache="dynamic")
    names = [k.cost.name for k in kernels_of_first_pass(wl) if k.kind.startswith("spmm_lscd")]
    assert len(names) == 6 * 2  # q, k, v, out, fc1, fc2 per layer
    assert not wl.fuses_qkv and workload().fuses_qkv


def test_sparse_weights_take_their_tiled_csl_bytes() -> None:
    sparse, dense = workload(), workload(weights={"format": "dense"})
    shapes = linear_shapes(sparse.model, 1, fused_qkv=True)
    assert shapes == [(3 * 512, 512), (512, 512), (2048, 512), (512, 2048)]
    linear_B = 2 * sum(n * k for n, k in shapes)
    encoded_B = sum(encode_counts(n, k, 0.8).storage_bytes for n, k in shapes)
    assert llm.weights_bytes(sparse) == pytest.approx(
        llm.weights_bytes(dense) + 2 * (encoded_B - linear_B)
    )
    assert llm.weights_bytes(sparse) < llm.weights_bytes(dense)


def test_sparse_decode_is_faster_than_dense_and_alike_in_both_fidelities() -> None:
    """At 4096 x 16384 weights the decode's linears stream their weights: 80 % sparse Tiled-CSL
    moves 0.4x the bytes. (At the tiny default width the SpMM's two kernels and fixed per-step
    costs lose to one dense GEMM, as they do on a GPU.)"""
    big = opt_like(hidden=4096, heads=32, kv_heads=32, ffn=16384)
    sparse_des, sparse_ana = both(workload(model=big, phase="decode"))
    dense_des, _ = both(workload(model=big, phase="decode", weights={"format": "dense"}))
    assert sparse_des.makespan_s == pytest.approx(sparse_ana.makespan_s, rel=1e-9)
    sparse_mm, dense_mm = sparse_des.metrics["matmul_time_s"], dense_des.metrics["matmul_time_s"]
    assert 0.4 * dense_mm < sparse_mm < 0.8 * dense_mm  # the byte ratio bounds the speedup
    assert sparse_des.metrics["per_gpu_tokens_per_s"] > dense_des.metrics["per_gpu_tokens_per_s"]


def test_time_split_adds_up_to_the_kernel_time_and_counts_the_collectives() -> None:
    wl = workload(gpus=["gpu0", "gpu1"], tensor_parallel=2)
    des, ana = both(wl)
    for out in (des, ana):
        split = sum(
            out.metrics[k]
            for k in (
                "matmul_time_s",
                "attention_time_s",
                "communication_time_s",
                "other_kernel_time_s",
            )
        )
        assert split == pytest.approx(out.metrics["kernel_time_s"], rel=1e-9)
        assert out.metrics["communication_time_s"] > 0
        assert out.metrics["per_gpu_tokens_per_s"] == pytest.approx(
            out.metrics["decode_tokens_per_s"] / 2
        )


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        ({"dtype": "bf16"}, "need dtype fp16"),
        ({"weights": {"format": "dense", "sparsity": 0.5}}, "sparsity needs format"),
        ({"model": opt_like(hidden=320, heads=4, ffn=1280)}, "multiple of 128"),
    ],
)
def test_the_spec_refuses_what_flash_llm_cannot_run(update: dict[str, object], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        workload(**update)
