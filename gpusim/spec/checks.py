"""Semantic checks that pydantic field validation cannot express (cross references, graphs).

Each check yields ``(location, reason)`` pairs; the loader turns the first into a SpecError
that names the file the offending value came from.
"""

from __future__ import annotations

from collections.abc import Iterator

import networkx as nx

from gpusim.spec.topology import CPUDevice, GPUDevice, Topology
from gpusim.spec.workload import (
    GemmAllToAllWorkload,
    KernelChainWorkload,
    TransfersWorkload,
    Workload,
)

Problem = tuple[tuple[int | str, ...], str]


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
    """Every device a workload names exists in the topology and has the right kind."""
    gpu_ids = {g.id for g in topo.gpus()}
    all_ids = {d.id for d in topo.devices}
    if isinstance(workload, GemmAllToAllWorkload):
        for i, gid in enumerate(workload.gpus or []):
            if gid not in gpu_ids:
                yield ("gpus", i), f"'{gid}' is not a GPU of topology '{topo.name}'"
        if workload.gpus is not None and len(set(workload.gpus)) != len(workload.gpus):
            yield ("gpus",), "a GPU is listed twice"
    elif isinstance(workload, KernelChainWorkload):
        if workload.gpu is not None and workload.gpu not in gpu_ids:
            yield ("gpu",), f"'{workload.gpu}' is not a GPU of topology '{topo.name}'"
    elif isinstance(workload, TransfersWorkload):
        for i, tr in enumerate(workload.transfers):
            for end in ("src", "dst"):
                ref = getattr(tr, end)
                if ref not in all_ids:
                    yield ("transfers", i, end), f"unknown device '{ref}' in topology '{topo.name}'"
            if tr.src == tr.dst:
                yield ("transfers", i, "dst"), "a transfer must go to another device"
