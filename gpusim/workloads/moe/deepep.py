"""DeepEP (normal kernels): a layout kernel, a count notification the host waits for, then
device-initiated dispatch and combine kernels on a few SMs moving exact token rows; the expert
GEMMs in between are launched by the host."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gpusim.execution.program import Exchange, ExchangeStep, KernelStep, Step, SyncStep
from gpusim.hardware.rates import GPURates
from gpusim.spec.moe import DeepEPStrategy
from gpusim.workloads.moe.hostdriven import (
    expert_ffn,
    expert_rows,
    router_steps,
    send_matrix,
)
from gpusim.workloads.moe.layer import LayerGeometry, RoutedBatch
from gpusim.workloads.moe.operators import DEEPEP_LAYOUT, ID_BYTES, layer_sizes


def build(
    g: LayerGeometry,
    batch: RoutedBatch,
    strategy: DeepEPStrategy,
    rates: Sequence[GPURates],
    nccl_sms: int,
) -> tuple[list[list[Step]], float]:
    """Every rank's program and the bytes moved between GPUs."""
    del nccl_sms  # DeepEP moves everything with its own kernels
    send = send_matrix(g, batch, pad_to_capacity=False)
    counts = np.full((g.n_gpus, g.n_gpus), float(g.local_experts * ID_BYTES))
    notify = Exchange("deepep_notify", counts, "onesided", strategy.comm_sms)
    dispatch = Exchange("deepep_dispatch", send, "onesided", strategy.comm_sms)
    combine = Exchange("deepep_combine", send.T.copy(), "onesided", strategy.comm_sms)
    programs: list[list[Step]] = []
    for r in range(g.n_gpus):
        ffn = expert_ffn(g, expert_rows(g, batch, r, False), rates[r], strategy.dtype, grouped=True)
        steps: list[Step] = [*router_steps(g, rates[r], strategy.dtype)]
        layout = DEEPEP_LAYOUT.cost(layer_sizes(g, strategy.dtype), rates[r])
        steps.append(KernelStep(layout, "gate"))
        steps.append(ExchangeStep(notify, "gate"))
        steps.append(SyncStep(g.n_gpus * g.local_experts * ID_BYTES, "gate"))
        steps.append(ExchangeStep(dispatch, "dispatch"))
        steps += [KernelStep(c, "gemm") for c in ffn.gemm0]
        steps.append(KernelStep(ffn.activation, "gemm"))
        steps += [KernelStep(c, "gemm") for c in ffn.gemm1]
        steps.append(ExchangeStep(combine, "combine"))
        programs.append(steps)
    moved = float(send.sum() - send.trace()) * 2
    return programs, moved
