"""The static interconnect of a topology: directional link resources and precomputed routes.

Pure (no SimPy): the DES registers these resources in a FluidNetwork in the same order, and the
analytic path reads capacities and routes directly.

A route is the one place a transfer's resources are decided: the link directions it crosses
(:attr:`Route.links`) and, where it starts or ends at a GPU, that GPU's HBM (the source's read,
the destination's write; docs/memory.md). :attr:`Route.resources` is the full list every
transfer (DES flow or static max-min flow) draws on.

Unified memory (a Jetson SoC, ``GPUSpec.memory_kind`` lpddr or ddr): the GPU's memory resource
*is* its host CPU's memory resource (``hbm[gpu].index == host_memory[cpu].index``; it is not a
resource of its own), so kernels' memory traffic and every transfer into that pool share one
capacity, and the GPU reaches its host without a link: an edge with no resource and no latency.
A route through the host (storage -> cpu -> gpu) crosses the storage link and draws on the
shared pool once (the destination's write).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

import networkx as nx

from gpusim.errors import SimulationError
from gpusim.hardware.rates import gpu_rates
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.topology import CPUDevice, GPUDevice, LinkSpec, SwitchDevice, Topology
from gpusim.units import GBps_to_Bps, ns_to_s


@dataclass(frozen=True)
class LinkResource:
    """One direction of one link."""

    index: int
    name: str
    link: LinkSpec
    src: str
    dst: str
    nameplate_Bps: float
    capacity_Bps: float


@dataclass(frozen=True)
class HostMemoryResource:
    """The memory of one CPU socket, a resource of its own: every byte written to or read from
    it (an NCCL SHM copy, a staged transfer) shares its bandwidth. Reads and writes share one
    capacity, as they share the DRAM channels."""

    index: int
    name: str
    cpu: str
    nameplate_Bps: float
    capacity_Bps: float


@dataclass(frozen=True)
class DeviceMemoryResource:
    """One GPU's HBM, a resource of its own: kernels' memory traffic and every transfer that
    starts or ends at the GPU (reading its source, writing its destination) share its achievable
    bandwidth. Reads and writes share one capacity, as they share the DRAM channels. For a
    unified-memory GPU it names its host CPU's memory resource (``shared_with`` that CPU)."""

    index: int
    name: str
    gpu: str
    nameplate_Bps: float
    capacity_Bps: float
    shared_with: str | None = None
    """The CPU whose memory resource this is (unified memory), or None for the GPU's own HBM."""


@dataclass(frozen=True)
class Route:
    """A path between two devices: the resources a transfer along it draws on and its latency.

    ``resources`` is the full list (the link directions, then the source GPU's HBM and the
    destination GPU's HBM where an end is a GPU); ``links`` the link directions only, in order.
    """

    src: str
    dst: str
    resources: tuple[int, ...]
    latency_s: float
    bottleneck_Bps: float
    links: tuple[int, ...]


def _efficiency(link: LinkSpec, profile: CalibrationProfile) -> float:
    """The link's own efficiency, else the profile's for its kind."""
    if link.efficiency is not None:
        return link.efficiency
    measured = profile.link_efficiency.get(link.kind)
    if measured is None:
        raise SimulationError(
            f"profile '{profile.id}' has no link_efficiency for '{link.kind}' links"
        )
    return measured.value


def _host_memory(
    cpu: CPUDevice, index: int, profile: CalibrationProfile | None
) -> HostMemoryResource:
    """``cpu``'s memory at its achievable bandwidth (the profile's fraction for its memory kind;
    nameplate without a profile)."""
    nameplate_Bps = GBps_to_Bps(cpu.memory.bw_GBps)
    efficiency = 1.0
    if profile is not None:
        measured = profile.memory_efficiency.get(cpu.memory.kind)
        if measured is None:
            raise SimulationError(
                f"profile '{profile.id}' has no memory_efficiency for '{cpu.memory.kind}' memory"
            )
        efficiency = measured.value
    return HostMemoryResource(
        index=index,
        name=f"{cpu.id}.memory",
        cpu=cpu.id,
        nameplate_Bps=nameplate_Bps,
        capacity_Bps=nameplate_Bps * efficiency,
    )


class Fabric:
    """Links of a topology as directional resources, with cached shortest-latency routes.

    GPUs are endpoints only: no route passes through a GPU it does not start or end at.
    """

    def __init__(self, topology: Topology, profile: CalibrationProfile | None) -> None:
        """Resources at the achievable capacity of ``profile`` (a link's own efficiency winning),
        or at nameplate when ``profile`` is None (what calibration fits fractions against)."""
        self.topology = topology
        self.profile = profile
        self.resources: list[LinkResource] = []
        self._switch_latency_s = {
            d.id: ns_to_s(d.latency_ns) for d in topology.devices if isinstance(d, SwitchDevice)
        }
        self._gpu_ids = {d.id for d in topology.devices if isinstance(d, GPUDevice)}
        self._graph: nx.DiGraph = nx.DiGraph()
        self._graph.add_nodes_from(d.id for d in topology.devices)
        self._routes: dict[tuple[str, str], Route] = {}
        for link in topology.links:
            efficiency = 1.0 if profile is None else _efficiency(link, profile)
            for src, dst, bw_GBps in (
                (link.a, link.b, link.bw_a_to_b_GBps),
                (link.b, link.a, link.bw_reverse_GBps),
            ):
                res = LinkResource(
                    index=len(self.resources),
                    name=f"{src}->{dst}",
                    link=link,
                    src=src,
                    dst=dst,
                    nameplate_Bps=GBps_to_Bps(bw_GBps),
                    capacity_Bps=GBps_to_Bps(bw_GBps) * efficiency,
                )
                self.resources.append(res)
                latency_s = ns_to_s(link.latency_ns) + self._switch_latency_s.get(dst, 0.0)
                # Parallel links between the same pair: keep the faster one for routing.
                old = self._graph.get_edge_data(src, dst)
                if old is None or self.resources[old["resource"]].capacity_Bps < res.capacity_Bps:
                    self._graph.add_edge(src, dst, resource=res.index, latency=latency_s)
        self.host_memory: dict[str, HostMemoryResource] = {}
        """Each CPU's memory, indexed after every link direction."""
        for cpu in topology.cpus():
            self.host_memory[cpu.id] = _host_memory(
                cpu, len(self.resources) + len(self.host_memory), profile
            )
        self.hbm: dict[str, DeviceMemoryResource] = {}
        """Each GPU's memory: its own HBM, indexed after the host memories in topology order, or
        (unified memory) its host CPU's memory resource."""
        base = len(self.resources) + len(self.host_memory)
        for gpu in topology.gpus():
            nameplate_Bps = GBps_to_Bps(gpu.model.hbm_bw_GBps)
            if gpu.model.unified_memory:
                host = self.host_memory[gpu.host]
                self.hbm[gpu.id] = DeviceMemoryResource(
                    index=host.index,
                    name=host.name,
                    gpu=gpu.id,
                    nameplate_Bps=host.nameplate_Bps,
                    capacity_Bps=host.capacity_Bps,
                    shared_with=gpu.host,
                )
                # On the SoC: no link, no hop. Replaces any link edge between the two.
                for src, dst in ((gpu.id, gpu.host), (gpu.host, gpu.id)):
                    self._graph.add_edge(src, dst, resource=None, latency=0.0)
                continue
            capacity_Bps = (
                nameplate_Bps
                if profile is None
                else gpu_rates(gpu.model, profile).hbm_achievable_Bps
            )
            self.hbm[gpu.id] = DeviceMemoryResource(
                index=base,
                name=f"{gpu.id}.hbm",
                gpu=gpu.id,
                nameplate_Bps=nameplate_Bps,
                capacity_Bps=capacity_Bps,
            )
            base += 1

    def own_memories(self) -> list[DeviceMemoryResource]:
        """The GPUs' memories that are resources of their own (not a host's unified memory), in
        index order."""
        return [m for m in self.hbm.values() if m.shared_with is None]

    @cached_property
    def capacities_Bps(self) -> list[float]:
        """Capacity of every resource, by index: link directions, host memories, GPU HBMs (a
        unified-memory GPU's is its host's memory, counted once)."""
        return (
            [r.capacity_Bps for r in self.resources]
            + [m.capacity_Bps for m in self.host_memory.values()]
            + [m.capacity_Bps for m in self.own_memories()]
        )

    def endpoint_memories(self, src: str, dst: str) -> tuple[int, ...]:
        """The HBM resources a transfer from ``src`` to ``dst`` draws on besides its links: the
        source GPU's (read) and the destination GPU's (written); none for a CPU or NIC end. A
        unified-memory GPU's is its host's memory."""
        ends = (self.hbm.get(src), self.hbm.get(dst))
        return tuple(m.index for m in ends if m is not None)

    def route(self, src: str, dst: str) -> Route:
        """The lowest-latency path from ``src`` to ``dst`` (cached)."""
        route = self._routes.get((src, dst))
        if route is not None:
            return route
        if src == dst:
            raise SimulationError(f"no route from '{src}' to itself")
        if src not in self._graph or dst not in self._graph:
            raise SimulationError(f"no device '{src if src not in self._graph else dst}'")
        self._routes_from(src)
        route = self._routes.get((src, dst))
        if route is None:
            raise SimulationError(f"no route from '{src}' to '{dst}' that avoids other GPUs")
        return route

    def _routes_from(self, src: str) -> None:
        """Every route out of ``src`` with one Dijkstra run. Edges leaving a GPU other than
        ``src`` are hidden, so other GPUs can end a path but never forward one."""
        gpus = self._gpu_ids
        view = nx.subgraph_view(self._graph, filter_edge=lambda u, _v: u == src or u not in gpus)
        paths: dict[str, list[str]] = nx.single_source_dijkstra_path(view, src, weight="latency")
        for dst, nodes in paths.items():
            if dst == src:
                continue
            edges = [self._graph.edges[u, v] for u, v in itertools.pairwise(nodes)]
            # A unified-memory GPU's edge to its host has no resource (no link on the SoC).
            links = tuple(int(e["resource"]) for e in edges if e["resource"] is not None)
            resources = (*links, *self.endpoint_memories(src, dst))
            caps = self.capacities_Bps
            self._routes[(src, dst)] = Route(
                src=src,
                dst=dst,
                resources=resources,
                latency_s=sum(float(e["latency"]) for e in edges),
                bottleneck_Bps=min(caps[r] for r in resources),
                links=links,
            )
