"""FasterMoE: the all-to-all and the expert work split into chunks and pipelined across
streams: chunk c's GEMMs overlap chunk c+1's dispatch and chunk c-1's combine."""

from __future__ import annotations

from collections.abc import Sequence

from gpusim.arith import ceil_div
from gpusim.execution.program import Exchange, ExchangeStep, KernelStep, Step
from gpusim.hardware.rates import GPURates
from gpusim.spec.moe import FasterMoEStrategy
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

DISPATCH_STREAM, COMPUTE_STREAM, COMBINE_STREAM = 1, 0, 2


def build(
    g: LayerGeometry,
    batch: RoutedBatch,
    strategy: FasterMoEStrategy,
    rates: Sequence[GPURates],
    nccl_sms: int,
) -> tuple[list[list[Step]], float]:
    """Every rank's program and the bytes moved between GPUs (dropless, exact sizes)."""
    c = strategy.chunks
    send = send_matrix(g, batch, pad_to_capacity=False)
    dispatch = [Exchange(f"dispatch_{i}", send / c, "nccl", nccl_sms) for i in range(c)]
    combine = [Exchange(f"combine_{i}", send.T / c, "nccl", nccl_sms) for i in range(c)]
    counts = count_exchange_steps(g, nccl_sms)  # one exchange shared by every rank
    programs: list[list[Step]] = []
    for r in range(g.n_gpus):
        rows = expert_rows(g, batch, r, pad_to_capacity=False)
        chunk_rows = [ceil_div(m, c) for m in rows]
        ffn = expert_ffn(g, chunk_rows, rates[r], strategy.dtype, grouped=True)
        steps: list[Step] = [*router_steps(g, rates[r], strategy.dtype)]
        steps += counts
        steps += permute_steps(g, rates[r])
        sent = []
        for i in range(c):
            steps.append(
                ExchangeStep(
                    dispatch[i],
                    "dispatch",
                    DISPATCH_STREAM,
                    after=(len(steps) - 1,) if i == 0 else (),
                )
            )
            sent.append(len(steps) - 1)
        back = []
        for i in range(c):
            steps += [KernelStep(k, "gemm", COMPUTE_STREAM, after=(sent[i],)) for k in ffn.gemm0]
            steps.append(KernelStep(ffn.activation, "gemm", COMPUTE_STREAM))
            steps += [KernelStep(k, "gemm", COMPUTE_STREAM) for k in ffn.gemm1]
            steps.append(
                ExchangeStep(combine[i], "combine", COMBINE_STREAM, after=(len(steps) - 1,))
            )
            back.append(len(steps) - 1)
        steps.append(unpermute_step(g, rates[r], after=tuple(back)))
        programs.append(steps)
    moved = float(send.sum() - send.trace()) * 2
    return programs, moved
