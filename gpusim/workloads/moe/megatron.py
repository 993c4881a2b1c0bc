"""Megatron-LM's MoE layer (alltoall token dispatcher): a host-driven kernel chain with
bulk-synchronous NCCL all-to-alls and no compute/communication overlap."""

from __future__ import annotations

from collections.abc import Sequence

from gpusim.hardware.rates import GPURates
from gpusim.spec.moe import MegatronStrategy
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
from gpusim.workloads.moe.program import Exchange, ExchangeStep, KernelStep, Step


def build(
    g: LayerGeometry,
    batch: RoutedBatch,
    strategy: MegatronStrategy,
    rates: Sequence[GPURates],
    nccl_sms: int,
) -> tuple[list[list[Step]], float]:
    """Every rank's program and the bytes the all-to-alls move between GPUs."""
    pad = strategy.pad_to_capacity
    send = send_matrix(g, batch, pad)
    dispatch = Exchange("dispatch_alltoall", send, "nccl", nccl_sms)
    combine = Exchange("combine_alltoall", send.T.copy(), "nccl", nccl_sms)
    counts = count_exchange_steps(g, nccl_sms)  # one exchange shared by every rank
    programs: list[list[Step]] = []
    for r in range(g.n_gpus):
        ffn = expert_ffn(
            g,
            expert_rows(g, batch, r, pad),
            rates[r],
            strategy.dtype,
            strategy.variant == "cutlass",
        )
        steps: list[Step] = [*router_steps(g, rates[r], strategy.dtype)]
        if not pad:  # dropless split sizes need the counts on the host
            steps += counts
        steps += permute_steps(g, rates[r])
        steps.append(ExchangeStep(dispatch, "dispatch"))
        steps += [KernelStep(c, "gemm") for c in ffn.gemm0]
        steps.append(KernelStep(ffn.activation, "gemm"))
        steps += [KernelStep(c, "gemm") for c in ffn.gemm1]
        steps.append(ExchangeStep(combine, "combine"))
        steps.append(unpermute_step(g, rates[r]))
        programs.append(steps)
    moved = float(send.sum() - send.trace()) * 2
    return programs, moved
