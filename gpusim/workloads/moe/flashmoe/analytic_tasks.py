"""The expert tasks of FlashMoE's closed form: each packet's row tiles, their GEMM0 -> GEMM1 ->
combine chains, the work they put on processors and the bytes they send back (see
:func:`gpusim.workloads.moe.flashmoe.analytic.analytic`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpusim.workloads.moe.flashmoe.plan import TASK_KINDS, tile_rows

if TYPE_CHECKING:
    from gpusim.workloads.moe.flashmoe.analytic import Layer


@dataclass
class Work:
    """What the expert tasks add up, per GPU."""

    end: list[float]
    """Latest row-tile chain ending on each GPU."""
    work: list[float]
    """Processor-seconds of the GPU's tasks (assignment + start latency + duration)."""
    tasks: list[int]
    first_ready: list[float]
    busy: dict[str, list[float]]
    """Per task kind: processor-seconds of task bodies on each GPU."""
    put_back: dict[tuple[int, int], list[float]]
    """RDMA returns per (source, resource): [first ready, bytes, longest tail]."""
    link_bytes: dict[str, float]

    @classmethod
    def empty(cls, n: int, link_bytes: dict[str, float]) -> Work:
        """Nothing yet on ``n`` GPUs; link bytes add to ``link_bytes``."""
        return cls(
            end=[0.0] * n,
            work=[0.0] * n,
            tasks=[0] * n,
            first_ready=[math.inf] * n,
            busy={kind: [0.0] * n for kind in TASK_KINDS},
            put_back={},
            link_bytes=link_bytes,
        )


@dataclass(frozen=True)
class _BackRoute:
    """The way a packet's results return from expert GPU ``d`` to source GPU ``g``."""

    resources: tuple[int, ...] = ()
    latency_s: float = 0.0
    bottleneck_Bps: float = math.inf
    remote: bool = False
    """Across nodes: GEMM1 writes locally and a put carries the row tile back."""
    names: tuple[str, ...] = ()


def _back_route(layer: Layer, d: int, g: int) -> _BackRoute:
    if g == d:
        return _BackRoute()
    back = layer.fabric.route(layer.ids[d], layer.ids[g])
    return _BackRoute(
        back.resources,
        back.latency_s,
        back.bottleneck_Bps,
        layer.rdma(d, g),
        tuple(layer.fabric.resources[r].name for r in back.links),
    )


def expert_tasks(layer: Layer, d: int, arrivals: list[tuple[float, int, int]], work: Work) -> None:
    """GPU ``d``'s subscriber decodes the packets in arrival order; each packet's row tiles
    then run their GEMM0 -> GEMM1 -> combine chains."""
    plan = layer.plans[d]
    sub = layer.times.subscriber_s_per_task
    sub_free = 0.0
    for arrive, g, e in sorted(arrivals):
        tokens = int(layer.counts[g, e])
        rows_list = tile_rows(tokens, plan.tile_m)
        n0 = len(rows_list) * plan.tn
        ready = max(arrive, sub_free) + n0 * sub
        sub_free = ready
        if tokens == 0:
            work.end[d] = max(work.end[d], ready)
            continue
        work.first_ready[d] = min(work.first_ready[d], ready)
        back = _back_route(layer, d, g)
        for r, rows in enumerate(rows_list):
            _row_tile(layer, d, g, r, rows, ready, back, work)


def _row_tile(
    layer: Layer,
    d: int,
    g: int,
    r: int,
    rows: int,
    ready: float,
    back: _BackRoute,
    work: Work,
) -> None:
    """Row tile ``r`` (``rows`` rows) of a packet from ``g`` decoded on ``d`` at ``ready``: its
    chain's end, its tasks' work and the bytes it sends back."""
    plan, home = layer.plans[d], layer.plans[g]
    times = layer.times
    h, s, lat, sub = (
        times.flag_handoff_s,
        times.scheduler_s_per_task,
        times.task_latency_s,
        times.subscriber_s_per_task,
    )
    out_B = rows * plan.tile_n * plan.element_bytes
    if back.remote:  # local epilogue; one uncontended put of the row tile
        write = out_B / plan.grid.block_stream_Bps
        back_s = back.latency_s + plan.tnx * out_B / back.bottleneck_Bps + h + plan.tnx * sub
    else:
        write = back.latency_s + out_B / plan.grid.block_stream_Bps
        back_s = back.latency_s + h + sub
    comb = home.combine_B(rows) / home.grid.block_stream_Bps
    chain = (
        ready
        + (r + 1) * plan.tn * s
        + lat
        + plan.gemm0_s
        + plan.tnx * s
        + lat
        + plan.gemm1_s
        + write
        + back_s
        + s
        + lat
        + comb
    )
    work.end[g] = max(work.end[g], chain)
    busy = work.busy
    busy["gemm0"][d] += plan.tn * plan.gemm0_s
    busy["gemm1"][d] += plan.tnx * (plan.gemm1_s + write)
    busy["combine"][g] += plan.tnx * comb
    work.work[d] += plan.tn * (s + lat + plan.gemm0_s)
    work.work[d] += plan.tnx * (s + lat + plan.gemm1_s + write)
    work.work[g] += plan.tnx * (s + lat + comb)
    work.tasks[d] += plan.tn + plan.tnx
    work.tasks[g] += plan.tnx
    link_bytes = work.link_bytes
    for name in back.names:
        link_bytes[name] = link_bytes.get(name, 0.0) + plan.tnx * out_B
    if back.remote:  # the returns into g share the links of their routes
        tail = h + plan.tnx * sub + s + lat + comb
        for res in back.resources:
            load = work.put_back.setdefault((g, res), [math.inf, 0.0, 0.0])
            load[0] = min(load[0], ready + plan.tn * s + lat + plan.gemm0_s)
            load[1] += plan.tnx * out_B
            load[2] = max(load[2], tail)
