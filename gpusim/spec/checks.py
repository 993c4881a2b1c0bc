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
    """Unique ids, links between distinct known devices, GPUs hosted by CPUs, a unified-memory
    GPU's host memory its own pool (:func:`unified_memory_problem`), a connected graph (a
    unified-memory GPU reaches its host without a link)."""
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
            else:
                problem = unified_memory_problem(dev, host)
                if problem is not None:
                    yield ("devices", i, "host"), problem
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
    graph.add_edges_from(
        (g.id, g.host) for g in topo.gpus() if g.model.unified_memory and g.host in kinds
    )
    if graph.number_of_nodes() and not nx.is_connected(graph):
        parts = sorted((sorted(c) for c in nx.connected_components(graph)), key=len, reverse=True)
        lonely = ", ".join(parts[1][:5])
        yield ("links",), f"topology is disconnected: {lonely} cannot reach {parts[0][0]}"


def unified_memory_problem(gpu: GPUDevice, host: CPUDevice) -> str | None:
    """Why ``gpu`` cannot share ``host``'s memory, or None: a unified-memory GPU (memory_kind
    lpddr or ddr) and its host CPU must describe one DRAM pool, of the same kind, capacity and
    nameplate bandwidth."""
    model, memory = gpu.model, host.memory
    if not model.unified_memory:
        return None
    if (model.memory_kind, model.hbm_capacity_GB, model.hbm_bw_GBps) == (
        memory.kind,
        memory.capacity_GB,
        memory.bw_GBps,
    ):
        return None
    return (
        f"GPU '{gpu.id}' has unified {model.memory_kind} memory ({model.hbm_capacity_GB:g} GB, "
        f"{model.hbm_bw_GBps:g} GB/s) but its host '{host.id}' has {memory.kind} memory "
        f"'{memory.name}' ({memory.capacity_GB:g} GB, {memory.bw_GBps:g} GB/s): a unified GPU "
        "shares its host's memory, so both must describe the same pool"
    )


def check_workload_against_topology(workload: Workload, topo: Topology) -> Iterator[Problem]:
    """What running ``workload`` on ``topo`` would refuse, knowable before running it: each
    workload spec class checks itself (its ``check`` method, next to its fields)."""
    yield from workload.check(topo)
