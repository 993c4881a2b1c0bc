"""DeepEP (normal, intranode kernels; deepseek-ai/DeepEP at dd758ca, V1 "legacy"): the expert
GEMMs between dispatch and combine are launched by the host. Per rank:

- ``Buffer.get_dispatch_layout`` (``csrc/kernels/legacy/layout.cu``): one layout kernel;
- ``Buffer::intranode_dispatch`` (``csrc/legacy/buffer.hpp``): the ``notify_dispatch`` kernel
  exchanges the per-rank and per-expert counts through the NVLink buffers (with a barrier); the
  host busy-waits (``while (true)`` on ``moe_recv_counter``, pinned mapped memory the kernel
  writes) until the counts land, allocates the receive tensors, then launches the ``dispatch``
  kernel on ``config.num_sms`` SMs (``Buffer.num_sms``, 20 by default: ``num_sms / 2``
  channels of a sender and a receiver block) moving exactly the routed rows;
- expert GEMMs (host-launched grouped GEMM and activation);
- the shared experts (``shared_experts``, DeepSeek-V3: 1): each a grouped GEMM pair over the
  rank's own ``tokens_per_gpu`` tokens, of the routed experts' size, on the same stream after
  the routed experts. ASSUMPTION: not overlapped with the dispatch or combine (DeepSeek-V3
  overlaps it in training; here its cost is an upper bound; docs/alf_lb.md);
- ``Buffer::intranode_combine``: ``cached_notify_combine`` (a barrier and the clearing of the
  channel queues), then the ``combine`` kernel on the same SMs moving the rows back and
  reducing the top-k copies.

The transfers run at the fabric's rate for device-initiated NVLink writes, the same link
efficiency as NCCL's; DeepEP's own figure (153 / 158 GB/s of ~160 GB/s NVLink on H800,
``docs/legacy.md``) is within 5 % of it (``tests/test_comet_deepep.py``). The host's wait on
mapped memory is modelled as a device-to-host copy after the queue drains."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gpusim.execution.program import (
    Exchange,
    ExchangeStep,
    HostStep,
    KernelStep,
    Step,
    SyncStep,
)
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
    channels = max(1, strategy.comm_sms // 2)  # buffer.hpp: num_channels = num_sms / 2
    queues = np.full((g.n_gpus, g.n_gpus), float(channels * 2 * 4))  # head and tail, int32
    notify_combine = Exchange("deepep_cached_notify_combine", queues, "onesided", strategy.comm_sms)
    combine = Exchange("deepep_combine", send.T.copy(), "onesided", strategy.comm_sms)
    programs: list[list[Step]] = []
    for r in range(g.n_gpus):
        ffn = expert_ffn(g, expert_rows(g, batch, r, False), rates[r], strategy.dtype, grouped=True)
        steps: list[Step] = [*router_steps(g, rates[r], strategy.dtype)]
        layout = DEEPEP_LAYOUT.cost(layer_sizes(g, strategy.dtype), rates[r])
        steps.append(HostStep("gate", "python"))  # Buffer.get_dispatch_layout (Python)
        steps.append(KernelStep(layout, "gate"))
        steps.append(HostStep("gate", "python"))  # Buffer.dispatch -> runtime (Python)
        steps.append(ExchangeStep(notify, "gate"))
        steps.append(SyncStep(g.n_gpus * g.local_experts * ID_BYTES, "gate"))
        steps.append(ExchangeStep(dispatch, "dispatch"))
        steps += [KernelStep(c, "gemm") for c in ffn.gemm0]
        steps.append(KernelStep(ffn.activation, "gemm"))
        steps += [KernelStep(c, "gemm") for c in ffn.gemm1]
        if g.shared_experts:
            shared = expert_ffn(
                g, [g.tokens_per_gpu] * g.shared_experts, rates[r], strategy.dtype, grouped=True
            )
            steps += [KernelStep(c, "gemm") for c in shared.gemm0]
            steps.append(KernelStep(shared.activation, "gemm"))
            steps += [KernelStep(c, "gemm") for c in shared.gemm1]
        steps.append(HostStep("combine", "python"))  # Buffer.combine -> runtime (Python)
        steps.append(ExchangeStep(notify_combine, "combine"))
        steps.append(ExchangeStep(combine, "combine"))
        programs.append(steps)
    moved = float(send.sum() - send.trace()) * 2
    return programs, moved
