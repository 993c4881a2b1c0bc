"""COMET (bytedance/flux at 19831ca) as its artifact harness runs it on Hopper
(ZSL98/Megatron-LM ``tests/unit_tests/transformer/moe/test_moe.py`` ``MoE_layer_flux.forward``):
``GemmGroupedV3AGScatter.forward_multiple_weights``, the activation, then
``GemmGroupedV3GatherRS.forward_gather_rs``. Per rank, T tokens, L local experts:

gate
    The router (Megatron's, as for every host-driven baseline; the AE harness itself precomputes
    the routing and times no router).
layer 0 (``src/moe_ag_scatter/ths_op/gemm_grouped_v3_ag_scatter.cc`` ``forward_impl``)
    ``cudaMemsetAsync`` of the tile barriers; ``all_gather_all2all``: the local shard copied into
    the gather buffer (``cudaMemcpyAsync`` D2D, T x H), ``nvshmemx_barrier_all_on_stream``, then
    on a copy stream one ``nvshmemx_getmem_on_stream`` per peer pulling that peer's whole token
    shard (T x H: an all-gather, (N-1) T H bytes into each rank, whatever the routing; copies,
    no SMs held) with a flag written after each; ``calc_gather_index`` and ``ag_scatter_sort``
    kernels; two ``cudaMemcpyAsync`` to the host (row total, sorted splits) and
    ``c10::cuda::stream_synchronize`` (the host waits); the grouped GEMM0 kernel on the whole GPU
    (``sm_margin`` 0), whose tiles wait for their source's flag, so it overlaps the gather;
    ``cudaStreamWaitEvent`` and ``nvshmemx_barrier_all_on_stream``.
activation
    ``gelu`` on the GEMM0 output (a framework op).
layer 1 (``src/moe_gather_rs/ths_op/gemm_grouped_v3_gather_rs.cc`` ``forward_gather_rs_impl``)
    Three ``cudaMemcpyAsync`` of the problem arguments to the device; the threadblock-specialised
    grouped GEMM1 kernel (``sm90_gemm_array_threadblock_specialized.hpp``): its last
    ``gather_rs_ctas`` CTAs (28 for 16-bit inputs) top-k reduce the finished column splits and
    write each token's partial row to the token's rank while the rest compute, so the combine
    starts after the first split (``compute_first``); ``nvshmemx_barrier_all_on_stream``,
    ``barrier.zero_()``, and ``ep_topk_reduce_impl`` summing the N partial rows of each token.

Not modelled: the exchange of routing indices a deployment without precomputed routing would
need, the host-side problem-schedule sort, the H2D argument copies' PCIe path (each is a tiny
queued copy), and the copy engines' own rate limit (the gather runs at the fabric's rate).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gpusim.execution.host_costs import RuntimeCall
from gpusim.execution.program import Exchange, ExchangeStep, KernelStep, Step, SyncStep
from gpusim.hardware.rates import GPURates
from gpusim.spec.moe import CometStrategy
from gpusim.workloads.moe.hostdriven import (
    elementwise,
    expert_ffn,
    expert_rows,
    router_steps,
)
from gpusim.workloads.moe.layer import LayerGeometry, RoutedBatch
from gpusim.workloads.moe.operators import ID_BYTES, INT32_BYTES  # flux's indices: int32


def build(
    g: LayerGeometry,
    batch: RoutedBatch,
    strategy: CometStrategy,
    rates: Sequence[GPURates],
    nccl_sms: int,
) -> tuple[list[list[Step]], float]:
    """Every rank's program and the bytes moved between GPUs."""
    del nccl_sms  # flux moves everything with copies and its own CTAs
    n, t, h = g.n_gpus, g.tokens_per_gpu, g.hidden
    shard_B = float(t * g.row_bytes)
    gather = np.full((n, n), shard_B)  # every rank pulls every peer's whole shard
    np.fill_diagonal(gather, 0.0)
    sm_count = rates[0].sm_count
    comm_ctas = min(strategy.gather_rs_ctas, sm_count - 1)
    ffn0 = [
        expert_ffn(g, expert_rows(g, batch, r, False), rates[r], strategy.dtype, True)
        for r in range(n)
    ]
    ffn1 = [
        expert_ffn(
            g, expert_rows(g, batch, r, False), rates[r], strategy.dtype, True, sm_count - comm_ctas
        )
        for r in range(n)
    ]
    # the fused kernels hold the whole GPU; GEMM0 on every SM, GEMM1 on all but the RS CTAs
    gemm0_s = max(sum(k.time_s for k in f.gemm0) for f in ffn0)
    gemm1_s = max(sum(k.time_s for k in f.gemm1) for f in ffn1)
    chunks = strategy.pipeline_chunks
    barrier = np.full((n, n), float(INT32_BYTES))
    np.fill_diagonal(barrier, 0.0)
    start_barrier = Exchange("nvshmem_barrier_ag", barrier, "onesided", 1)
    ag_gemm0 = Exchange(
        "comet_ag_gemm0", gather, "onesided", 0, gemm0_s, chunks, holds_all_sms=True
    )
    end_barrier = Exchange("nvshmem_barrier_ag_end", barrier, "onesided", 1)
    gemm1_rs = Exchange(
        "comet_gemm1_gather_rs",
        gather.copy(),  # each token's partial (top-k reduced) row to the token's rank
        "onesided",
        comm_ctas,
        gemm1_s,
        chunks,
        compute_first=True,
        holds_all_sms=True,
    )
    rs_barrier = Exchange("nvshmem_barrier_rs", barrier, "onesided", 1)
    programs: list[list[Step]] = []
    for r in range(n):
        rows = sum(expert_rows(g, batch, r, False))
        tk = n * t * g.top_k  # flux indexes every gathered token's top-k slots
        steps: list[Step] = [*router_steps(g, rates[r], strategy.dtype)]
        # layer 0: one framework op (the pybind call), whose C++ issues the rest as raw calls
        steps += [
            KernelStep(
                elementwise("memset_barrier", 0, n * INT32_BYTES, rates[r]),
                "dispatch",
                call=RuntimeCall.memcpy_async,  # cudaMemsetAsync
            ),
            KernelStep(
                elementwise("copy_local_shard", shard_B, shard_B, rates[r]),
                "dispatch",
                new_op=False,
                call=RuntimeCall.memcpy_async,
            ),
            ExchangeStep(start_barrier, "dispatch"),
            KernelStep(
                elementwise("calc_gather_index", tk * INT32_BYTES, tk * INT32_BYTES, rates[r]),
                "dispatch",
                new_op=False,
            ),
            KernelStep(
                elementwise("ag_scatter_sort", tk * INT32_BYTES, tk * INT32_BYTES, rates[r]),
                "dispatch",
                new_op=False,
            ),
            # two cudaMemcpyAsync to the host, then c10::cuda::stream_synchronize
            SyncStep(INT32_BYTES * (1 + g.local_experts * n), "dispatch"),
            ExchangeStep(ag_gemm0, "gemm"),
            ExchangeStep(end_barrier, "gemm"),
            KernelStep(ffn0[r].activation, "gemm"),  # gelu
        ]
        # layer 1: the problem arguments' three H2D copies, GEMM1 + gather-RS, the barrier,
        # barrier.zero_() (an ATen op), ep_topk_reduce_impl (a raw launch)
        args_B = float(INT32_BYTES * (g.experts + n + 1))
        steps += [
            KernelStep(
                elementwise("h2d_args", args_B, args_B, rates[r]),
                "combine",
                new_op=i == 0,
                call=RuntimeCall.memcpy_async,
            )
            for i in range(3)
        ]
        steps += [
            ExchangeStep(gemm1_rs, "combine"),
            ExchangeStep(rs_barrier, "combine"),
            KernelStep(elementwise("barrier_zero", 0, INT32_BYTES, rates[r]), "combine"),
            KernelStep(
                elementwise(
                    "ep_topk_reduce",
                    n * t * g.row_bytes + rows * ID_BYTES,
                    t * h * g.element_bytes,
                    rates[r],
                ),
                "combine",
                new_op=False,
            ),
        ]
        programs.append(steps)
    moved = float(gather.sum()) * 2
    return programs, moved
