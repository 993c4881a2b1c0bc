"""Kernels and copies of a GPU that one stream has to itself, timed without events.

When one stream is the only user of a GPU (its SMs, its HBM and L2, its copy engines and the
links its copies cross), each of its operations runs alone: :meth:`GPURuntime.run_kernel`
takes free SMs and sends flows that are alone on their resources, :meth:`GPURuntime.copy`
takes a free copy engine. :class:`SoloGPU` gives such an operation's end from its start with
the float operations the event engine performs on the way (the floor's timeout, the
:class:`~gpusim.engine.fluid.FluidNetwork`'s per-class virtual clocks, its wake-ups at
``now + (next completion - now)`` and its finish test), so the times equal the DES's to the
last bit; ``tests/test_solo_gpu.py`` holds them against the engine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gpusim.engine.fluid import _FINISH_REL_TOL, FluidNetwork
from gpusim.engine.maxmin import max_min_fair_rates
from gpusim.errors import SimulationError
from gpusim.hardware.gpu import GPURuntime
from gpusim.kernels.cost import KernelCost


@dataclass(frozen=True, slots=True)
class _Body:
    """What a kernel or copy does after it starts: flows of ``(size_B, rate_Bps)`` that enter
    together ``latency_s`` after the start, or (no flows) a fixed ``fixed_s``."""

    latency_s: float
    flows: tuple[tuple[float, float], ...]
    fixed_s: float = 0.0

    def end_s(self, start_s: float) -> float:
        """When the operation started at ``start_s`` ends, as the DES times it."""
        if not self.flows:
            return start_s + self.fixed_s if self.fixed_s > 0 else start_s
        enter = start_s + self.latency_s if self.latency_s > 0 else start_s
        if len(self.flows) == 1:  # the common case, without the general loop's lists
            size, rate = self.flows[0]
            if rate != math.inf:
                wake = enter + max(enter + size / rate - enter, 0.0)
                if _finished(size, rate, enter, wake):
                    return wake
        return _flows_end_s(enter, self.flows)


def _flows_end_s(enter_s: float, flows: Sequence[tuple[float, float]]) -> float:
    """The last completion of ``flows`` (each alone on its resources at its rate) entering at
    ``enter_s``: the settle gives each class a clock from 0 and a completion ``enter + size /
    rate``; each wake-up lands at ``now + max(earliest completion - now, 0)`` and finishes the
    flows :func:`_finished` accepts (the others keep their completion time)."""
    live = [(s, r, enter_s + s / r if r != math.inf else enter_s) for s, r in flows]
    now = enter_s
    while live:
        earliest = math.inf
        for _, _, next_s in live:
            if next_s < earliest:
                earliest = next_s
        wake = now + max(earliest - now, 0.0)
        rest = [f for f in live if not _finished(f[0], f[1], enter_s, wake)]
        if len(rest) == len(live) and wake == now:
            raise SimulationError(f"a lone flow never finishes at {now} s")  # the DES would spin
        live, now = rest, wake
    return now


def _finished(size_B: float, rate_Bps: float, enter_s: float, now: float) -> bool:
    """``FluidNetwork._wake``'s test for the flow of a class that entered alone at ``enter_s``
    (its clock read 0 then, so the flow completes at virtual ``size_B``)."""
    virtual = 0.0 if now == enter_s else 0.0 + rate_Bps * (now - enter_s)
    return (
        rate_Bps == math.inf
        or size_B <= virtual * (1.0 + _FINISH_REL_TOL)
        or (rate_Bps > 0 and now + (size_B - virtual) / rate_Bps <= now)
    )


class SoloGPU:
    """End times of the kernels and copies of a GPU used by one stream and nothing else."""

    def __init__(self, gpu: GPURuntime) -> None:
        self.gpu = gpu
        self.network: FluidNetwork = gpu.network
        self._bodies: dict[int, tuple[KernelCost, _Body]] = {}

    def kernel_end_s(self, cost: KernelCost, start_s: float) -> float:
        """The end of ``cost`` started at ``start_s`` (``GPURuntime.run_kernel`` alone)."""
        entry = self._bodies.get(id(cost))
        if entry is None or entry[0] is not cost:
            entry = self._bodies[id(cost)] = (cost, self._kernel_body(cost))
        return entry[1].end_s(start_s)

    def copy_end_s(
        self, route: tuple[int, ...], latency_s: float, size_B: float, start_s: float
    ) -> float:
        """The end of a copy of ``size_B`` over ``route`` started at ``start_s``
        (``GPURuntime.copy`` alone)."""
        flows = ((float(size_B), self._rates([route], [math.inf])[0]),) if size_B > 0 else ()
        enter = start_s + latency_s if latency_s > 0 else start_s
        return _flows_end_s(enter, flows) if flows else enter

    def _kernel_body(self, cost: KernelCost) -> _Body:
        """``run_kernel``'s branches: HBM (and L2) flows capped by the compute, or a timeout."""
        gpu, compute = self.gpu, cost.compute_time_s
        if cost.l2_bytes > 0 and gpu.l2 is not None and compute > 0:
            both = ((gpu.hbm, cost.hbm_bytes), (gpu.l2, cost.l2_bytes))
            moved = [(r, b) for r, b in both if b > 0]
        elif cost.hbm_bytes > 0:
            moved = [(gpu.hbm, cost.hbm_bytes)]
        else:
            return _Body(0.0, (), cost.floor_s + compute)
        caps = [b / compute if compute > 0 else math.inf for _, b in moved]
        rates = self._rates([(r,) for r, _ in moved], caps)
        flows = tuple((float(b), rate) for (_, b), rate in zip(moved, rates, strict=True))
        return _Body(cost.floor_s, flows)

    def _rates(self, routes: list[tuple[int, ...]], caps: list[float]) -> list[float]:
        """The max-min rates of flows entering together, one per class, on disjoint routes: what
        the network's settle gives them (its one-class closed form is the solver's)."""
        return max_min_fair_rates(routes, [1] * len(routes), caps, self.network.capacity_Bps)
