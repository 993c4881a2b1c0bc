"""FastMoE and FasterMoE (laekov/fastmoe at ee3c561), one rank's forward of
``FMoETransformerMLP`` as its code issues it. Every step names its source (file, function).

Plain FastMoE (the default; what the reference harness runs without
``FMOE_FASTER_SCHEDULE_ENABLE``), per rank, T tokens, E experts, L = E / N local experts:

gate (``fmoe/gates/naive_gate.py`` ``NaiveGate.forward``)
    ``nn.Linear`` T x E x H (cuBLAS), ``torch.topk``, ``F.softmax`` of the k values.
prepare (``fmoe/functions.py`` ``count_by_gate`` then ``prepare_forward``)
    ``torch.zeros`` (E counts), ``fmoe_cuda.expert_count``, ``.long()``; ``expert_exchange``
    (``cuda/global_exchange.cpp`` ``fmoe_cuda_expert_exchange_impl``: one NCCL group, a send and
    a receive of L int64 per worker); ``torch.cumsum``, ``.int()``; ``lec_cum[-1].item()``
    (sync); ``assign_pos``; ``.view().sum(dim=0)``; ``fwd_expert_count.sum().item()`` (sync);
    ``local_expert_count.cpu()``, ``global_expert_count.cpu()``, ``fwd_expert_count.cpu()``
    (three syncs).
dispatch (``fmoe/layers.py`` ``_fmoe_general_global_forward``, ``MOEScatter.forward``)
    ``torch.div(pos, topk)``; ``_local_scatter`` (``index_select`` of T x k rows);
    ``global_scatter`` (``cuda/global_exchange.h`` ``fmoe_cuda_global_scatter_impl``): for
    each local expert i one ``ncclGroupStart ... ncclGroupEnd`` holding a send and a receive
    with every worker j (rows for expert i of j): L NCCL calls, L x N point-to-point pairs.
gemm (``fmoe/layers.py`` ``FMoE.expert_fn``, ``fmoe/transformer.py`` ``_Expert.forward``)
    ``fwd_expert_count.cpu()`` is already a host tensor (``prepare_forward`` returned it from
    ``.cpu()``): no sync, only the call. Then a Python loop over the L experts: a slice,
    ``torch.tensor([count])``, and the expert: ``htoh4`` (FMoELinear H -> I), activation,
    ``h4toh`` (FMoELinear I -> H). Each FMoELinear (``fmoe/linear.py`` ``MOELinear.forward``
    -> ``cuda/parallel_linear.cu`` ``_linear_forward``):

    - ``expert_count.to(device)``: a host-to-device copy of the count, which PyTorch issues
      blocking (``copy_`` without ``non_blocking``: copy, then a stream synchronize);
    - ``bias.repeat_interleave(counts)`` (``aten/src/ATen/native/Repeat.h``
      ``repeat_interleave_common``, no ``output_size``): ``cumsum``, ``cumsum[-1].item()``
      (sync: the output size), ``(repeats >= 0).all().item()`` (sync: the check), the index
      kernel, then ``index_select`` of the bias rows (m x out bytes);
    - ``fmoe_cuda_linear_forward_impl`` (``cuda/parallel_linear.cuh``): ``smgr->syncTorch()``
      (``cudaStreamSynchronize`` of the torch stream), one ``cublasXgemm`` on the stream
      manager's stream 0, ``smgr->sync(1)`` (``cudaStreamSynchronize`` of that stream).

    ``torch.cat`` of the L outputs.
combine (``fmoe/functions.py`` ``MOEGather.forward``, ``fmoe/layers.py`` ``FMoE.forward``)
    ``global_gather`` (``fmoe_cuda_global_gather_impl``: L NCCL groups again, reversed);
    ``_local_gather``: ``torch.zeros`` (T x k x H) and ``index_add_``; ``torch.bmm`` of the
    gate scores with the k outputs per token.

So a rank pays 5 syncs to prepare and 10 per local expert, and 2 L + 1 NCCL calls: at a fixed
number of tokens the latency grows with the experts and with the GPUs from the mechanism.

FasterMoE's smart schedule (``smart_schedule``; ``fmoe/fastermoe/schedule.py``
``MoEForward.forward``, ``cuda/fastermoe/smart_schedule.h`` ``fmoe_cuda_fused_forward_impl``):
the same gate and prepare, ``_local_scatter``, then ``smgr->syncTorch()``; S: for each of
``n_groups = N / pipeline_gran`` steps and each local expert one NCCL group exchanging with the
``pipeline_gran`` workers of the step's group, on the communication stream; C: per (step,
expert) the Python callback ``_expert_forward`` (``torch.tensor``, the expert with the stream
manager on the torch stream, so ``sync`` is a no-op but ``syncTorch`` still blocks, and
``y.copy_``) after the step's inputs arrived (``cudaStreamWaitEvent``); R: the reverse groups,
issued after every C; ``smgr->sync(num_expert + 1)``; ``_local_gather`` (zeros, ``index_copy_``);
``torch.bmm``. Dynamic shadowing (``shadowing``, ``FMOE_FASTER_SHADOW_ENABLE``): the policy's
all-gather and syncs, its decision, and each shadowed expert's broadcast, skipped rows and local
computation (:mod:`gpusim.workloads.moe.fastermoe_shadow`).

Host costs: every op pays its kind's dispatch (``OpKind``), GEMMs the cuBLAS call, views and
Python frames (the loop body, module and autograd-Function calls) host-only steps, each NCCL
group the NCCL call. Not modelled: the dummy loss tensor's copy in ``NaiveGate.forward``, the
autograd records of a training forward, the per-call enqueue of each ncclSend/ncclRecv inside a
group (one NCCL call per group).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gpusim.execution.host_costs import OpKind, RuntimeCall
from gpusim.execution.program import Exchange, ExchangeStep, HostStep, KernelStep, Step, SyncStep
from gpusim.hardware.rates import GPURates
from gpusim.kernels import kernel_cost
from gpusim.kernels.cost import KernelCost
from gpusim.spec.base import Dtype
from gpusim.spec.moe import FasterMoEStrategy
from gpusim.spec.workload import GemmOp
from gpusim.workloads.moe.hostdriven import Phase, elementwise, renamed
from gpusim.workloads.moe.layer import LayerGeometry, RoutedBatch
from gpusim.workloads.moe.operators import ID_BYTES, PROB_BYTES

TORCH_STREAM, SMGR_STREAM, COMM_STREAM = 0, 1, 2
"""The torch current stream; the stream manager's stream 0 (cuBLAS in plain FastMoE); the
smart schedule's communication stream (``smgr->stream(num_expert)``)."""


def _gemm(m: int, n: int, k: int, dtype: Dtype, rates: GPURates, name: str) -> KernelCost:
    return renamed(kernel_cost(GemmOp(m=m, n=n, k=k, dtype=dtype), rates), name)


def _op(
    name: str,
    read_B: float,
    write_B: float,
    rates: GPURates,
    phase: Phase,
    kind: OpKind = OpKind.elementwise,
    stream: int = TORCH_STREAM,
) -> Step:
    """A framework op of ``kind`` launching one memory-bound kernel."""
    return KernelStep(elementwise(name, read_B, write_B, rates), phase, stream, op_kind=kind)


def _cublas(cost: KernelCost, phase: Phase, stream: int = TORCH_STREAM) -> Step:
    """A GEMM launched through cuBLAS (heuristic + launch, ``host.cublas_call_us``)."""
    return KernelStep(cost, phase, stream, call=RuntimeCall.cublas)


def _to_host(n_bytes: int, phase: Phase, rates: GPURates, only: int | None = None) -> list[Step]:
    """``.item()`` / ``.cpu()`` / a blocking ``copy_``: ATen's ``memcpy_and_sync`` (a
    ``cudaMemcpyAsync`` on the current stream, then ``cudaStreamSynchronize`` of it). With
    ``only`` None the copy is a device-to-host transfer after every stream of the rank (exact
    where the other streams are drained, as in plain FastMoE); with a stream, the copy is queued
    on that stream and the host waits for that stream alone (the smart schedule, whose
    communication stream keeps running)."""
    if only is None:
        return [SyncStep(n_bytes, phase, op_kind=OpKind.elementwise)]
    copy = KernelStep(
        elementwise("memcpy", n_bytes, n_bytes, rates), phase, only, call=RuntimeCall.memcpy_async
    )
    return [copy, _stream_sync(phase, only)]


def _stream_sync(phase: Phase, stream: int = TORCH_STREAM) -> Step:
    """``cudaStreamSynchronize``: the host waits for ``stream`` to drain (no copy)."""
    return SyncStep(0, phase, kind="stream", stream=stream)


def _gate_steps(g: LayerGeometry, rates: GPURates, dtype: Dtype) -> list[Step]:
    """``NaiveGate.forward``: linear, top-k, softmax of the k values."""
    t, e, k = g.tokens_per_gpu, g.experts, g.top_k
    logits = t * e * g.element_bytes
    return [
        _cublas(_gemm(t, e, g.hidden, dtype, rates, "gate_linear"), "gate"),
        _op("topk", logits, t * k * (g.element_bytes + ID_BYTES), rates, "gate", OpKind.reduction),
        _op("softmax", t * k * PROB_BYTES, t * k * PROB_BYTES, rates, "gate", OpKind.reduction),
    ]


def _prepare_steps(g: LayerGeometry, rates: GPURates, count_exchange: Exchange) -> list[Step]:
    """``count_by_gate`` and ``prepare_forward`` (fmoe/functions.py): counts, their exchange,
    positions, and the five host syncs."""
    t, e, k, lx = g.tokens_per_gpu, g.experts, g.top_k, g.local_experts
    counts_B = e * ID_BYTES
    return [
        _op("zeros_counts", 0, e * 4, rates, "gate"),
        _op("expert_count", t * k * ID_BYTES, e * 4, rates, "gate"),
        _op("counts_long", e * 4, counts_B, rates, "gate"),
        ExchangeStep(count_exchange, "gate"),
        _op("cumsum", counts_B, counts_B, rates, "gate", OpKind.reduction),
        _op("cumsum_int", counts_B, e * 4, rates, "gate"),
        *_to_host(4, "gate", rates),  # lec_cum[-1].item()
        _op(
            "assign_pos", t * k * ID_BYTES + e * 4, t * k * ID_BYTES, rates, "gate", OpKind.indexing
        ),
        HostStep("gate", OpKind.view),  # global_expert_count.view(world_size, num_expert)
        _op("fwd_expert_count", counts_B, lx * ID_BYTES, rates, "gate", OpKind.reduction),
        _op("fwd_batch_size", lx * ID_BYTES, ID_BYTES, rates, "gate", OpKind.reduction),
        *_to_host(ID_BYTES, "gate", rates),  # fwd_expert_count.sum().item()
        *_to_host(counts_B, "gate", rates),  # local_expert_count.cpu()
        *_to_host(counts_B, "gate", rates),  # global_expert_count.cpu()
        *_to_host(lx * ID_BYTES, "gate", rates),  # fwd_expert_count.cpu()
    ]


def _local_scatter(g: LayerGeometry, rates: GPURates) -> list[Step]:
    """``torch.div(pos, topk)`` and ``_local_scatter``'s ``index_select`` of T x k rows."""
    t, k = g.tokens_per_gpu, g.top_k
    rows_B = t * k * g.row_bytes
    return [
        _op("pos_div", t * k * ID_BYTES, t * k * ID_BYTES, rates, "dispatch"),
        _op("index_select", rows_B + t * k * ID_BYTES, rows_B, rates, "dispatch", OpKind.indexing),
    ]


def fmoe_linear_steps(
    m: int,
    n_in: int,
    n_out: int,
    g: LayerGeometry,
    rates: GPURates,
    dtype: Dtype,
    stream: int,
    plain: bool,
) -> list[Step]:
    """One ``FMoELinear`` of one expert holding ``m`` rows (``cuda/parallel_linear.cu``
    ``_linear_forward``): the count's blocking copy, the bias ``repeat_interleave`` (its two
    ``.item()``), ``syncTorch``, one cuBLAS GEMM, and ``smgr->sync``. ``plain``: the stream
    manager uses its own stream 0 for the GEMM and syncs it; else (the smart schedule's
    ``use_default``) everything runs on ``stream``, the torch stream, and ``sync`` is a
    no-op."""
    out_B = m * n_out * g.element_bytes
    only = None if plain else stream  # the smart schedule's other stream keeps running
    steps: list[Step] = [
        HostStep("gemm", "python", 2),  # FMoELinear.forward, MOELinear.apply
        HostStep("gemm", OpKind.view),  # inp.type_as(self.weight)
        *_to_host(ID_BYTES, "gemm", rates, only),  # expert_count.to(device): blocking copy
        # bias.repeat_interleave: aten/src/ATen/native/Repeat.h repeat_interleave_common
        _op("repeat_cumsum", ID_BYTES, ID_BYTES, rates, "gemm", OpKind.reduction, stream),
        *_to_host(ID_BYTES, "gemm", rates, only),  # cumsum[-1].item(): the output size
        _op("repeat_ge0", ID_BYTES, 1, rates, "gemm", OpKind.elementwise, stream),
        _op("repeat_all", 1, 1, rates, "gemm", OpKind.reduction, stream),
        *_to_host(1, "gemm", rates, only),  # (repeats >= 0).all().item(): the check
        _op("repeat_index", ID_BYTES, m * ID_BYTES, rates, "gemm", OpKind.indexing, stream),
        _op(
            "bias_rows",
            m * ID_BYTES + n_out * g.element_bytes,
            out_B,
            rates,
            "gemm",
            OpKind.indexing,
            stream,
        ),
        _stream_sync("gemm", stream if not plain else TORCH_STREAM),  # smgr->syncTorch()
    ]
    if m > 0:  # fmoe_cuda_linear_forward_impl skips an expert without rows
        gemm = _gemm(m, n_out, n_in, dtype, rates, "cublas_gemm")
        steps.append(_cublas(gemm, "gemm", SMGR_STREAM if plain else stream))
    if plain:
        steps.append(_stream_sync("gemm", SMGR_STREAM))  # smgr->sync(1)
    return steps


def _expert_steps(
    m: int, g: LayerGeometry, rates: GPURates, dtype: Dtype, stream: int, plain: bool
) -> list[Step]:
    """``_Expert.forward`` (fmoe/transformer.py): htoh4, activation, h4toh."""
    act_B = m * g.intermediate * g.element_bytes
    return [
        HostStep("gemm", "python"),  # _Expert.forward
        *fmoe_linear_steps(m, g.hidden, g.intermediate, g, rates, dtype, stream, plain),
        _op("activation", act_B, act_B, rates, "gemm", OpKind.elementwise, stream),
        *fmoe_linear_steps(m, g.intermediate, g.hidden, g, rates, dtype, stream, plain),
    ]


def _combine_tail(g: LayerGeometry, rates: GPURates, index_add: bool) -> list[Step]:
    """``_local_gather`` (zeros, then ``index_add_`` or ``index_copy_``) and the gate's
    ``torch.bmm`` (memory-bound: k rows in, one out per token)."""
    t, k = g.tokens_per_gpu, g.top_k
    rows_B = t * k * g.row_bytes
    name = "index_add" if index_add else "index_copy"
    return [
        _op("zeros", 0, rows_B, rates, "combine"),
        _op(name, 2 * rows_B + t * k * ID_BYTES, rows_B, rates, "combine", OpKind.indexing),
        HostStep("combine", OpKind.view, 3),  # view(-1, topk, dim), gate_score.view, reshape
        _cublas(
            elementwise("bmm_gate", rows_B + t * k * PROB_BYTES, t * g.row_bytes, rates), "combine"
        ),
    ]


def expert_groups(g: LayerGeometry, batch: RoutedBatch) -> list[np.ndarray]:
    """Rows each rank sends each rank for local expert i, one matrix per i: the traffic of
    ``fmoe_cuda_global_scatter_impl``'s i-th NCCL group (``send[r][j]`` = rows of rank r routed
    to local expert i of rank j)."""
    n, lx = g.n_gpus, g.local_experts
    counts = np.asarray(batch.counts, dtype=float)
    return [counts[:, [j * lx + i for j in range(n)]] for i in range(lx)]


def build(
    g: LayerGeometry,
    batch: RoutedBatch,
    strategy: FasterMoEStrategy,
    rates: Sequence[GPURates],
    nccl_sms: int,
) -> tuple[list[list[Step]], float]:
    """Every rank's program and the bytes moved between GPUs (dropless, exact sizes)."""
    n, lx = g.n_gpus, g.local_experts
    count_exchange = Exchange(
        "expert_exchange", np.full((n, n), float(lx * ID_BYTES)), "nccl", nccl_sms
    )
    rows = expert_groups(g, batch)
    if strategy.smart_schedule:
        from gpusim.workloads.moe.fastermoe_smart import smart_programs

        counts = np.asarray(batch.counts, dtype=float)
        programs = smart_programs(g, rows, strategy, rates, nccl_sms, count_exchange, counts)
    else:
        programs = _plain_programs(g, rows, strategy.dtype, rates, nccl_sms, count_exchange)
    bcast_B = 0.0
    if strategy.shadowing:  # what crosses: the unshadowed rows and each broadcast
        from gpusim.workloads.moe import fastermoe_shadow as sh

        rows, shadowed = sh.shadow(g, rows, np.asarray(batch.counts, dtype=float))
        bcast_B = len(shadowed) * (n - 1) * float(sh.param_bytes(g))
    send = np.sum(rows, axis=0) * g.row_bytes
    moved = float(send.sum() - np.trace(send)) * 2 + bcast_B
    return programs, moved


def _plain_programs(
    g: LayerGeometry,
    rows: list[np.ndarray],
    dtype: Dtype,
    rates: Sequence[GPURates],
    nccl_sms: int,
    count_exchange: Exchange,
) -> list[list[Step]]:
    scatter = [
        Exchange(f"global_scatter_{i}", r * g.row_bytes, "nccl", nccl_sms)
        for i, r in enumerate(rows)
    ]
    gather = [
        Exchange(f"global_gather_{i}", r.T * g.row_bytes, "nccl", nccl_sms)
        for i, r in enumerate(rows)
    ]
    programs: list[list[Step]] = []
    for r in range(g.n_gpus):
        steps = [*_gate_steps(g, rates[r], dtype), *_prepare_steps(g, rates[r], count_exchange)]
        steps += _local_scatter(g, rates[r])
        steps += [ExchangeStep(ex, "dispatch") for ex in scatter]
        local_rows = [int(m[:, r].sum()) for m in rows]
        steps.append(HostStep("gemm", OpKind.view))  # fwd_expert_count.cpu(): on the host
        for m in local_rows:
            # the loop body: the input slice (a view) and torch.tensor([count]) (a host op)
            steps += [HostStep("gemm", "python"), HostStep("gemm", OpKind.view, 2)]
            steps += _expert_steps(m, g, rates[r], dtype, TORCH_STREAM, plain=True)
        total_B = sum(local_rows) * g.row_bytes
        steps.append(_op("cat", total_B, total_B, rates[r], "gemm"))
        steps += [ExchangeStep(ex, "combine") for ex in gather]
        steps += _combine_tail(g, rates[r], index_add=True)
        programs.append(steps)
    return programs
