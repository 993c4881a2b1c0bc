"""An explicit set of transfers over the fabric (network what-ifs and network tests)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from gpusim.hardware.node import Node
from gpusim.hardware.platform import Platform
from gpusim.result import Outcome
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.topology import Topology
from gpusim.spec.workload import TransfersWorkload
from gpusim.units import us_to_s
from gpusim.workloads.common import (
    StaticFlow,
    network_link_bytes,
    static_completion_s,
    static_link_bytes,
)

METRICS = frozenset({"makespan_s", "bytes_moved", "transfers"})
"""The metric names both models report (the registry declares them for sweep checks)."""


def _outcome(finish: list[float], wl: TransfersWorkload, link_bytes: dict[str, float]) -> Outcome:
    makespan = max(finish)
    total = float(sum(t.bytes for t in wl.transfers))
    return Outcome(
        makespan_s=makespan,
        metrics={"makespan_s": makespan, "bytes_moved": total, "transfers": float(len(finish))},
        link_bytes=link_bytes,
        series={"finish_s": finish},
    )


def des(node: Node, wl: TransfersWorkload, *, seed: int) -> Outcome:
    """Each transfer starts at its time, pays its route latency, then shares links max-min
    (``seed`` not used: nothing is drawn at random)."""
    env = node.sim.env
    finish = [0.0] * len(wl.transfers)

    def one(i: int) -> Generator[simpy.Event, Any, None]:
        tr = wl.transfers[i]
        if tr.start_us > 0:
            yield env.timeout(us_to_s(tr.start_us))
        route = node.fabric.route(tr.src, tr.dst)
        yield node.network.transfer(
            route.resources, tr.bytes, route.latency_s, label=f"{tr.src}->{tr.dst}"
        )
        finish[i] = float(env.now)

    for i in range(len(wl.transfers)):
        env.process(one(i))
    node.sim.run()
    node.finish()
    return _outcome(finish, wl, network_link_bytes(node))


def analytic(
    topology: Topology, profile: CalibrationProfile, wl: TransfersWorkload, *, seed: int
) -> Outcome:
    """Static max-min rates with every transfer active (exact when nothing contends; ``seed``
    not used)."""
    fabric = Platform.of(topology, profile).fabric
    flows = [
        StaticFlow(fabric.route(t.src, t.dst), float(t.bytes), us_to_s(t.start_us))
        for t in wl.transfers
    ]
    return _outcome(static_completion_s(fabric, flows), wl, static_link_bytes(fabric, flows))
