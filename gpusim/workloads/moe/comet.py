"""COMET: communication fused into the expert GEMM kernels. A share of each fused kernel's
thread blocks moves tokens (device-initiated writes, exact sizes) while the rest compute, over
pipelined chunks: dispatch + GEMM0 in one kernel, GEMM1 + combine in another."""

from __future__ import annotations

from collections.abc import Sequence

from gpusim.execution.program import Exchange, ExchangeStep, KernelStep, Step
from gpusim.hardware.rates import GPURates
from gpusim.spec.moe import CometStrategy
from gpusim.workloads.moe.hostdriven import (
    count_exchange_steps,
    expert_ffn,
    expert_rows,
    permute_steps,
    router_steps,
    send_matrix,
    unpermute_step,
)
from gpusim.workloads.moe.layer import LayerGeometry, RoutedBatch


def build(
    g: LayerGeometry,
    batch: RoutedBatch,
    strategy: CometStrategy,
    rates: Sequence[GPURates],
    nccl_sms: int,
) -> tuple[list[list[Step]], float]:
    """Every rank's program and the bytes moved between GPUs."""
    send = send_matrix(g, batch, pad_to_capacity=False)
    sm_count = rates[0].sm_count
    comm_sms = max(1, round(strategy.comm_block_fraction * sm_count))
    compute_sms = max(1, sm_count - comm_sms)
    ffns = [
        expert_ffn(g, expert_rows(g, batch, r, False), rates[r], strategy.dtype, True, compute_sms)
        for r in range(g.n_gpus)
    ]
    # The fused kernels hold the whole GPU; their GEMM time is that of the compute share.
    gemm0_s = max(sum(k.time_s for k in f.gemm0) for f in ffns)
    gemm1_s = max(sum(k.time_s for k in f.gemm1) for f in ffns)
    dispatch = Exchange(
        "comet_dispatch_gemm0",
        send,
        "onesided",
        comm_sms,
        gemm0_s,
        strategy.pipeline_chunks,
        holds_all_sms=True,
    )
    combine = Exchange(
        "comet_gemm1_combine",
        send.T.copy(),
        "onesided",
        comm_sms,
        gemm1_s,
        strategy.pipeline_chunks,
        compute_first=True,
        holds_all_sms=True,
    )
    counts = count_exchange_steps(g, nccl_sms)  # one exchange shared by every rank
    programs: list[list[Step]] = []
    for r in range(g.n_gpus):
        steps: list[Step] = [*router_steps(g, rates[r], strategy.dtype)]
        steps += counts
        steps += permute_steps(g, rates[r])
        steps.append(ExchangeStep(dispatch, "gemm"))
        steps.append(KernelStep(ffns[r].activation, "gemm"))
        steps.append(ExchangeStep(combine, "combine"))
        steps.append(unpermute_step(g, rates[r]))
        programs.append(steps)
    moved = float(send.sum() - send.trace()) * 2
    return programs, moved
