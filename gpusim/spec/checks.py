"""Semantic checks that pydantic field validation cannot express (cross references, graphs).

Each check yields ``(location, reason)`` pairs; the loader turns the first into a SpecError
that names the file the offending value came from.
"""

from __future__ import annotations

from collections.abc import Iterator

import networkx as nx

from gpusim.spec.problems import Problem
from gpusim.spec.topology import CPUDevice, GPUDevice, Topology
from gpusim.spec.workload import Workload


def check_topology(topo: Topology) -> Iterator[Problem]:
    """Unique ids, links between distinct known devices, GPUs hosted by CPUs, a connected graph."""
    seen: set[str] = set()
    for i, dev in enumerate(topo.devices):
        if dev.id in seen:
            yield ("devices", i, "id"), f"duplicate device id '{dev.id}'"
        seen.add(dev.id)
    kinds = {d.id: d for d in topo.devices}
    for i, dev in enumerate(topo.devices):
        if isinstance(dev, GPUDevice):
            host = kinds.get(dev.host)
            if host is None:
                yield ("devices", i, "host"), f"unknown device '{dev.host}'"
            elif not isinstance(host, CPUDevice):
                yield ("devices", i, "host"), f"'{dev.host}' is a {host.kind}, not a cpu"
    for i, link in enumerate(topo.links):
        for end in ("a", "b"):
            ref = getattr(link, end)
            if ref not in kinds:
                yield ("links", i, end), f"unknown device '{ref}' (dangling link endpoint)"
        if link.a == link.b:
            yield ("links", i, "b"), f"link connects '{link.a}' to itself"
    graph: nx.Graph = nx.Graph()
    graph.add_nodes_from(kinds)
    graph.add_edges_from((lk.a, lk.b) for lk in topo.links if lk.a in kinds and lk.b in kinds)
    if graph.number_of_nodes() and not nx.is_connected(graph):
        parts = sorted((sorted(c) for c in nx.connected_components(graph)), key=len, reverse=True)
        lonely = ", ".join(parts[1][:5])
        yield ("links",), f"topology is disconnected: {lonely} cannot reach {parts[0][0]}"


def check_workload_against_topology(workload: Workload, topo: Topology) -> Iterator[Problem]:
    """What running ``workload`` on ``topo`` would refuse, knowable before running it: each
    workload spec class checks itself (its ``check`` method, next to its fields)."""
    yield from workload.check(topo)
