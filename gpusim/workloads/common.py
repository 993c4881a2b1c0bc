"""Pieces shared by workload models: link accounting for both fidelities. The static flow
helpers live in :mod:`gpusim.hardware.static_flows` and are re-exported here."""

from __future__ import annotations

from collections.abc import Sequence

from gpusim.hardware.fabric import Fabric
from gpusim.hardware.node import Node
from gpusim.hardware.static_flows import StaticFlow, static_completion_s


def static_link_bytes(fabric: Fabric, flows: Sequence[StaticFlow]) -> dict[str, float]:
    """Bytes each link direction carries for a set of flows."""
    out: dict[str, float] = {}
    for f in flows:
        for r in f.route.links:
            name = fabric.resources[r].name
            out[name] = out.get(name, 0.0) + f.size_B
    return out


def network_link_bytes(node: Node) -> dict[str, float]:
    """Bytes each link direction carried in a DES run (links only, non-zero only)."""
    stats = node.network.stats()
    carried = (stats[link.index] for link in node.platform.links)
    return {s.name: s.bytes_carried for s in carried if s.bytes_carried > 0}


__all__ = ["StaticFlow", "network_link_bytes", "static_completion_s", "static_link_bytes"]
