"""FasterMoE's smart schedule (laekov/fastmoe ee3c561, ``fmoe/fastermoe/schedule.py``
``MoEForward.forward`` and ``cuda/fastermoe/smart_schedule.h``
``fmoe_cuda_fused_forward_impl``); the step list is in :mod:`gpusim.workloads.moe.fastermoe`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from gpusim.execution.host_costs import OpKind
from gpusim.execution.program import Exchange, ExchangeStep, HostStep, KernelStep, Step
from gpusim.hardware.rates import GPURates
from gpusim.spec.moe import FasterMoEStrategy
from gpusim.workloads.moe import fastermoe as fm
from gpusim.workloads.moe import fastermoe_shadow as sh
from gpusim.workloads.moe.layer import LayerGeometry


def _step_exchanges(
    rows: list[np.ndarray], gran: int, n_groups: int, row_B: int, nccl_sms: int, back: bool
) -> list[list[Exchange]]:
    """Per pipeline step and local expert, the NCCL group of ``exchangeWith`` calls: at step s
    rank r sends to the workers of group (r / gran + s) mod n_groups (``GEN_BASE``) and
    receives from group (r / gran - s); ``back`` reverses the direction (R_0 ... R_n)."""
    n = len(rows[0])
    out: list[list[Exchange]] = []
    for s in range(n_groups):
        mask = np.array(
            [[(j // gran) == ((i // gran + s) % n_groups) for j in range(n)] for i in range(n)]
        )
        name = "smart_gather" if back else "smart_scatter"
        row = [
            Exchange(
                f"{name}_{s}_{e}",
                (r * mask).T * row_B if back else r * mask * row_B,
                "nccl",
                nccl_sms,
            )
            for e, r in enumerate(rows)
        ]
        out.append(row)
    return out


def smart_programs(
    g: LayerGeometry,
    rows: list[np.ndarray],
    strategy: FasterMoEStrategy,
    rates: Sequence[GPURates],
    nccl_sms: int,
    count_exchange: Exchange,
    counts: np.ndarray | None = None,
) -> list[list[Step]]:
    """Every rank's program under the smart schedule; with ``strategy.shadowing`` the shadow
    policy's steps and, for each expert it shadows, the broadcast, the skipped rows and the
    local computation (:mod:`gpusim.workloads.moe.fastermoe_shadow`). ``counts``: rows each
    rank routes to each global expert (N x E)."""
    n, dtype, lx = g.n_gpus, strategy.dtype, g.local_experts
    shadowed: list[int] = []
    bcasts: list[Exchange] = []
    param_B = 0
    policy_ex = sh.policy_gather(n, g.experts, nccl_sms)
    if strategy.shadowing:
        assert counts is not None
        rows, shadowed = sh.shadow(g, rows, counts)
        param_B = sh.param_bytes(g)
        bcasts = [sh.broadcast(f"shadow_bcast_{i}", n, param_B, nccl_sms) for i in shadowed]
    gran = min(strategy.pipeline_gran, n)  # smart_schedule.h caps pipeline_gran at world_size
    n_groups = n // gran
    scatter = _step_exchanges(rows, gran, n_groups, g.row_bytes, nccl_sms, back=False)
    gather = _step_exchanges(rows, gran, n_groups, g.row_bytes, nccl_sms, back=True)
    programs: list[list[Step]] = []
    for r in range(n):
        steps = [
            *fm._gate_steps(g, rates[r], dtype),
            *fm._prepare_steps(g, rates[r], count_exchange),
        ]
        if strategy.shadowing:  # policy_fn(...) in _fmoe_general_global_forward
            steps += sh.policy_steps(n, g.experts, policy_ex)
        for i in shadowed:  # fmoe_cuda_fused_forward: the owner's get_param_fn
            if i // lx == r:
                steps.append(HostStep("dispatch", "python"))
                steps.append(fm._op("get_expert_params", param_B, param_B, rates[r], "dispatch"))
        steps += fm._local_scatter(g, rates[r])
        steps.append(fm._stream_sync("dispatch"))  # smgr->syncTorch()
        arrived = []
        for s in range(n_groups):  # S_0 ... S_n on the communication stream
            steps += [ExchangeStep(ex, "dispatch", fm.COMM_STREAM) for ex in scatter[s]]
            arrived.append(len(steps) - 1)  # cudaEventRecord(input_ready[step])
        bcast_at = []
        for bc in bcasts:  # ncclBcast from the owner on the communication stream
            steps.append(ExchangeStep(bc, "dispatch", fm.COMM_STREAM))
            bcast_at.append(len(steps) - 1)  # cudaEventRecord(evt_shadow[si])
        computed = []
        for s in range(n_groups):  # C_0 ... C_n: the Python callback per (step, expert)
            src = [i for i in range(n) if i // gran == (r // gran - s) % n_groups]
            first = len(steps)
            for e in range(g.local_experts):
                m = int(sum(rows[e][i][r] for i in src))
                if m == 0:  # computeFn returns for an empty micro-batch
                    continue
                # computeFn -> _expert_forward: x.data, enable_grad, torch.tensor([n]),
                # expert_fn_single, then y.copy_(y0)
                steps += [HostStep("gemm", "python", 3), HostStep("gemm", OpKind.view, 2)]
                steps += fm._expert_steps(m, g, rates[r], dtype, fm.TORCH_STREAM, plain=False)
                out_B = m * g.row_bytes
                steps.append(fm._op("y_copy", out_B, out_B, rates[r], "gemm"))
            # FMOE_SWE(torchStream, input_ready[step]): the step's first launch waits for it
            for i in range(first, len(steps)):
                head = steps[i]
                if isinstance(head, KernelStep):
                    steps[i] = replace(head, after=(arrived[s],))
                    break
            computed.append(len(steps) - 1)
        for si, i in enumerate(shadowed):  # compute over shadowed experts, own rows
            m = int(counts[r][i]) if counts is not None else 0
            first = len(steps)
            steps += [HostStep("gemm", "python"), HostStep("gemm", OpKind.view)]  # stash_fn
            if m > 0:
                steps += [HostStep("gemm", "python", 3), HostStep("gemm", OpKind.view, 2)]
                steps += fm._expert_steps(m, g, rates[r], dtype, fm.TORCH_STREAM, plain=False)
                out_B = m * g.row_bytes
                steps.append(fm._op("y_copy", out_B, out_B, rates[r], "gemm"))
            for k in range(first, len(steps)):  # FMOE_SWE(torchStream, evt_shadow[si])
                head = steps[k]
                if isinstance(head, KernelStep):
                    steps[k] = replace(head, after=(bcast_at[si],))
                    break
        for s in range(n_groups):  # R_0 ... R_n, after output_ready[step]
            for e, ex in enumerate(gather[s]):
                after = (computed[s],) if e == 0 else ()
                steps.append(ExchangeStep(ex, "combine", fm.COMM_STREAM, after))
        steps.append(fm._stream_sync("combine", fm.COMM_STREAM))  # smgr->sync(num_expert + 1)
        steps += fm._combine_tail(g, rates[r], index_add=False)
        programs.append(steps)
    return programs
