"""The static platform of a run: a topology under a profile, built once and shared.

Everything here is fixed before time starts: the fabric's directional link resources and routes,
each GPU's rates, and the index of every resource the fluid network holds, named: links first
(as the fabric numbers them), then each CPU's memory (the fabric's host memories, which NCCL's
SHM transport crosses), then one HBM resource per GPU with memory of its own in topology order
(a unified-memory GPU's memory is its host CPU's memory resource: the same index), then one L2
resource per GPU in topology order (what library kernels' operand reads draw on). The DES node
registers exactly these resources in exactly this order; analytic code reads capacities and
routes from the same object, so neither side assumes where a resource sits.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from gpusim.errors import SimulationError
from gpusim.hardware.fabric import Fabric, LinkResource, Route
from gpusim.hardware.rates import GPURates, gpu_rates
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.topology import Topology

LINK_GROUP = "links"
MEMORY_GROUP = "memory"


@dataclass(frozen=True)
class PlatformResource:
    """One resource of the fluid network: a link direction, a CPU's memory or a GPU's HBM."""

    index: int
    name: str
    capacity_Bps: float
    group: str
    """``LINK_GROUP`` or ``MEMORY_GROUP`` (the trace track the DES draws it on)."""


class Platform:
    """A topology under a calibration profile: fabric, per-GPU rates and named resource indices.

    Build it with :meth:`of`, which returns the same object for the same (topology, profile)
    objects, so routes and rates are computed once per run however many models read them.
    """

    def __init__(self, topology: Topology, profile: CalibrationProfile) -> None:
        """The fabric now; GPU rates and the resource table on first use (prefer :meth:`of`)."""
        self.topology = topology
        self.profile = profile
        self.fabric = Fabric(topology, profile)
        gpus = topology.gpus()
        self.host_of: dict[str, str] = {g.id: g.host for g in gpus}
        """The CPU each GPU hangs off, by GPU id."""
        self.node_of: dict[str, int] = {g.id: g.node for g in gpus}
        """The node (machine) each GPU sits in, by GPU id."""

    @cached_property
    def rates(self) -> dict[str, GPURates]:
        """Each GPU's rates, by GPU id (computed on first use: a model that moves bytes over
        links only never needs the profile's GPU fractions)."""
        return {g.id: gpu_rates(g.model, self.profile) for g in self.topology.gpus()}

    @cached_property
    def hbm_resource(self) -> dict[str, int]:
        """Index of each GPU's HBM resource, by GPU id: after the links and the host memories,
        in topology order; a unified-memory GPU's is its host CPU's memory."""
        return {g: m.index for g, m in self.fabric.hbm.items()}

    @cached_property
    def l2_resource(self) -> dict[str, int]:
        """Index of each GPU's L2 resource, by GPU id: after every HBM, in topology order."""
        base = len(self.fabric.capacities_Bps)
        return {g.id: base + i for i, g in enumerate(self.topology.gpus())}

    @cached_property
    def resources(self) -> tuple[PlatformResource, ...]:
        """Every resource of the fluid network, by index: the link directions and the host
        memories (the fabric's indices), each GPU's own HBM at :attr:`hbm_resource`, then each GPU's
        L2 at :attr:`l2_resource` (its near-partition read rate, docs/memory.md)."""
        links = [
            PlatformResource(r.index, r.name, r.capacity_Bps, LINK_GROUP)
            for r in self.fabric.resources
        ]
        host_memories = [
            PlatformResource(m.index, m.name, m.capacity_Bps, MEMORY_GROUP)
            for m in self.fabric.host_memory.values()
        ]
        hbm = [
            PlatformResource(m.index, m.name, m.capacity_Bps, MEMORY_GROUP)
            for m in self.fabric.own_memories()
        ]
        l2 = [
            PlatformResource(index, f"{g}.l2", self.rates[g].l2_near_Bps, MEMORY_GROUP)
            for g, index in self.l2_resource.items()
        ]
        return (*links, *host_memories, *hbm, *l2)

    @cached_property
    def capacities_Bps(self) -> tuple[float, ...]:
        """Capacity of every resource (links, host memories, HBM and L2), by index."""
        return tuple(r.capacity_Bps for r in self.resources)

    @classmethod
    def of(cls, topology: Topology, profile: CalibrationProfile) -> Platform:
        """The platform of these topology and profile objects, built on first use and shared."""
        key = (id(topology), id(profile))
        with _CACHE_LOCK:
            hit = _CACHE.get(key)
            if hit is not None and hit.topology is topology and hit.profile is profile:
                _CACHE.move_to_end(key)
                return hit
        platform = cls(topology, profile)
        with _CACHE_LOCK:
            _CACHE[key] = platform  # holds both objects, so their ids stay theirs
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        return platform

    @property
    def links(self) -> Sequence[LinkResource]:
        """The link directions, by index (the first resources)."""
        return self.fabric.resources

    def is_link(self, index: int) -> bool:
        """Whether resource ``index`` is a link direction (not a memory)."""
        return self.resources[index].group == LINK_GROUP

    def gpu_rates(self, gpu_id: str) -> GPURates:
        """The rates of GPU ``gpu_id``."""
        try:
            return self.rates[gpu_id]
        except KeyError:
            raise SimulationError(f"no GPU '{gpu_id}' in topology '{self.topology.name}'") from None

    def rates_of(self, gpu_ids: Sequence[str]) -> list[GPURates]:
        """The rates of these GPUs, in order."""
        return [self.gpu_rates(g) for g in gpu_ids]

    def route(self, src: str, dst: str) -> Route:
        """The fabric's lowest-latency route from ``src`` to ``dst``: its links, plus the HBM of
        a GPU at either end (:attr:`Route.resources`, what a transfer draws on)."""
        return self.fabric.route(src, dst)


_CACHE_SIZE = 8
_CACHE: OrderedDict[tuple[int, int], Platform] = OrderedDict()
_CACHE_LOCK = threading.Lock()
