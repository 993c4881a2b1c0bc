"""FasterMoE's dynamic shadowing (laekov/fastmoe ee3c561, ``FMOE_FASTER_SHADOW_ENABLE=1``):
the policy's cost, its decision, and what a shadowed expert changes in the smart schedule.

The policy (``fmoe/fastermoe/shadow_policy.py`` ``global_policy``, called by
``fmoe/fastermoe/schedule.py`` ``_fmoe_general_global_forward`` after ``prepare_forward``):
``local_expert_count.to(device)`` (a blocking host-to-device copy: ``prepare_forward`` returned
it from ``.cpu()``), ``dist.all_gather`` of every worker's E counts (an NCCL ring all-gather),
``torch.stack``, ``.sum(1)`` and ``.cpu()`` (a sync); then the decision on the host. Not
modelled: the stack and sum kernels on the N x E counts (two small kernels between the
all-gather and the copy the host waits for) and the ``torch.empty_like`` allocations.

The decision, with the library's formula and default constants (``FMOE_FASTER_GLBPLC_*``:
50 Gb/s network, 11.5 TFLOP/s GEMM, alpha 2, ``d_model`` the input's hidden size, 4-byte data):
the gathered counts are a workers x experts table and ``.sum(1)`` totals each worker's row,
not each expert's column; the totals are sorted descending and candidate i (a worker index,
used as an expert index in ``res``) is shadowed while ``3 comp B_k + 4 feat B_k + shadow_time``
stays below the previous latency. With top-k routing every worker sends T k rows: the totals
are equal, so ``lat_new = lat_base + send_model_time`` and nothing is shadowed.

A shadowed expert (``cuda/fastermoe/smart_schedule.h`` ``computePtrs`` and
``fmoe_cuda_fused_forward_impl``): its rows are not exchanged (``local_expert_count[idx_send] *
!stored_models[idx_send]``, its owner receives none); after S_0 ... S_n one ``ncclBcast`` of its
parameters from its owner on the communication stream (modelled as a ring all-gather with a
shard of ``P / (N - 1)`` bytes, so each ring link carries the P bytes a ring broadcast puts on
it); after C_0 ... C_n each rank computes its own rows for it after the broadcast's event.
"""

from __future__ import annotations

import numpy as np

from gpusim.execution.host_costs import OpKind, RuntimeCall
from gpusim.execution.program import Exchange, ExchangeStep, Step, SyncStep
from gpusim.workloads.moe.layer import LayerGeometry
from gpusim.workloads.moe.operators import ID_BYTES

NET_BPS = 50 * 1e9 / 8  # FMOE_FASTER_GLBPLC_NETBW default
GEMM_FLOPS = 11.5e12  # FMOE_FASTER_GLBPLC_GPUTP default
ALPHA = 2.0  # FMOE_FASTER_GLBPLC_ALPHA default
DATA_SIZE = 4
"""The policy's own element size: shadow_policy.py hard-codes 4 bytes whatever the dtype
(its comment: "TODO: data type other than float"), so the decision is the library's."""


def global_policy(counts: np.ndarray, d_model: float) -> np.ndarray:
    """``global_policy``'s ``stored_models`` from the gathered counts (``counts[w][e]``: rows
    worker w routes to global expert e): one bool per global expert. Follows the library: row
    sums per worker, the sorted worker indices used as expert indices."""
    table = np.asarray(counts, dtype=float)
    totals = table.sum(1)  # all_global_expert_count.sum(1): per worker, not per expert
    order = np.argsort(-totals, kind="stable")  # .sort(0, descending=True)
    b_ws = totals[order]
    alpha_h2 = ALPHA * d_model**2
    send_feature = d_model * DATA_SIZE / NET_BPS
    send_model = 2 * alpha_h2 * DATA_SIZE / NET_BPS
    comp = 4 * alpha_h2 / GEMM_FLOPS
    lat_base = 3 * comp * b_ws[0] + 4 * send_feature * b_ws[0]
    res = np.zeros(table.shape[1], dtype=bool)
    shadow_time = 0.0
    for i, index in enumerate(order[:-1]):
        b_k = b_ws[i + 1]
        shadow_time += send_model
        lat_new = 3 * comp * b_k + 4 * send_feature * b_k + shadow_time
        if lat_new < lat_base:
            lat_base = lat_new
            res[int(index)] = True
        else:
            break
    return res


def param_bytes(g: LayerGeometry) -> int:
    """``get_expert_param_size`` x ``sizeof(scalar_t)``: both linears' weights and biases."""
    return (2 * g.hidden * g.intermediate + g.intermediate + g.hidden) * g.element_bytes


def shadow(
    g: LayerGeometry, rows: list[np.ndarray], counts: np.ndarray
) -> tuple[list[np.ndarray], list[int]]:
    """The global experts the policy shadows and the per-local-expert exchange rows without
    theirs (``computePtrs``/``exchangeWith``: neither sent nor received)."""
    lx = g.local_experts
    shadowed = [int(i) for i in np.flatnonzero(global_policy(counts, float(g.hidden)))]
    rows = [r.copy() for r in rows]
    for i in shadowed:
        rows[i % lx][:, i // lx] = 0.0
    return rows, shadowed


def policy_gather(n: int, experts: int, nccl_sms: int) -> Exchange:
    """``dist.all_gather`` of every worker's E int64 counts (one instance, met by every rank)."""
    return Exchange.ring("shadow_policy_all_gather", "all_gather", n, experts * ID_BYTES, nccl_sms)


def policy_steps(n: int, experts: int, gather: Exchange) -> list[Step]:
    """The policy's cost on one rank: the counts' blocking copy to the device, the all-gather
    (a torch.distributed call), and the ``.cpu()`` of the N worker totals."""
    return [
        # local_expert_count.to(device): blocking copy (ATen memcpy_and_sync)
        SyncStep(experts * ID_BYTES, "gate", op_kind=OpKind.elementwise),
        ExchangeStep(gather, "gate", call=RuntimeCall.collective),  # dist.all_gather
        SyncStep(n * ID_BYTES, "gate", op_kind=OpKind.elementwise),  # .sum(1).cpu()
    ]


def broadcast(name: str, n: int, param_B: float, nccl_sms: int) -> Exchange:
    """``ncclBcast`` of ``param_B`` bytes, as a ring all-gather whose links each carry them."""
    return Exchange.ring(name, "all_gather", n, param_B / max(n - 1, 1), nccl_sms)
