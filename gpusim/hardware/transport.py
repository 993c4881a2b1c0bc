"""Which NCCL transport carries a message between two GPUs, and the resources it crosses.

NCCL picks a transport per pair of ranks from the machine's topology (``src/graph/paths.cc``,
``ncclTopoCheckP2p``, NVIDIA/nccl commit 5067397):

- between nodes: NET (through the NICs);
- inside a node, P2P when the GPUs reach each other over NVLink or through PCIe switches only
  (path type up to PXB: "By default don't use P2P across CPU Host Bridges and further apart");
- otherwise SHM: the sender copies into pinned host memory, the receiver copies out, so the bytes
  cross the sender's PCIe (or C2C) link up, the host memory twice (a write and a read), the
  socket link when the receiver hangs off the other socket, and the receiver's link down.

A topology (``Topology.nccl_transport``, or a scenario's ``options.nccl_transport``) may force
one transport inside a node, as ``NCCL_P2P_DISABLE=1`` / ``NCCL_SHM_DISABLE=1`` do; between
nodes NET is the only transport.

Pure (no SimPy): the DES and the closed forms use the same paths.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpusim.errors import SimulationError
from gpusim.hardware.fabric import Fabric, Route
from gpusim.spec.profile import NcclHardware
from gpusim.spec.topology import CPUDevice, GPUDevice, LinkKind, NcclTransport, NICDevice

__all__ = ["NcclPath", "nccl_path"]


@dataclass(frozen=True)
class NcclPath:
    """How one message goes from ``src`` to ``dst``: its transport, NCCL's latency class for
    it, and its legs. A message moves its bytes over every leg at once (SHM's copy in and copy
    out run pipelined through a FIFO) and is delivered when the last leg is done."""

    src: str
    dst: str
    transport: NcclTransport
    hardware: NcclHardware
    legs: tuple[Route, ...]

    @property
    def bottleneck_Bps(self) -> float:
        """The slowest leg's bottleneck capacity."""
        return min(leg.bottleneck_Bps for leg in self.legs)


def nccl_path(fabric: Fabric, src: str, dst: str) -> NcclPath:
    """The transport and legs NCCL uses from GPU ``src`` to GPU ``dst`` on ``fabric``."""
    topo = fabric.topology
    a, b = _gpu(fabric, src), _gpu(fabric, dst)
    forced = topo.nccl_transport
    if a.node != b.node:
        return NcclPath(src, dst, NcclTransport.net, NcclHardware.net, (fabric.route(src, dst),))
    if forced == NcclTransport.net:
        return _net_loopback(fabric, a, b)
    direct = fabric.route(src, dst)
    crosses_cpu = any(
        isinstance(topo.device(fabric.resources[r].dst), CPUDevice) for r in direct.links
    )
    if forced == NcclTransport.p2p or (forced == NcclTransport.auto and not crosses_cpu):
        nvlink_only = all(fabric.resources[r].link.kind == LinkKind.nvlink for r in direct.links)
        hw = NcclHardware.nvlink if nvlink_only else NcclHardware.pcie
        return NcclPath(src, dst, NcclTransport.p2p, hw, (direct,))
    return _shm(fabric, a, b)


def _gpu(fabric: Fabric, device_id: str) -> GPUDevice:
    try:
        dev = fabric.topology.device(device_id)
    except KeyError:
        raise SimulationError(f"no device '{device_id}'") from None
    if not isinstance(dev, GPUDevice):
        raise SimulationError(f"'{device_id}' is not a GPU")
    return dev


def _shm(fabric: Fabric, a: GPUDevice, b: GPUDevice) -> NcclPath:
    """Through the sender's socket memory: GPU -> host memory (write), host memory (read) ->
    receiving GPU, the second leg crossing the socket link when ``b`` hangs off another CPU."""
    mem = fabric.host_memory[a.host].index
    up = fabric.route(a.id, a.host)
    down = fabric.route(a.host, b.id)
    copy_in = _join(a.id, a.host, (up,), fabric, extra=(mem,), extra_first=False)
    copy_out = _join(a.host, b.id, (down,), fabric, extra=(mem,), extra_first=True)
    return NcclPath(a.id, b.id, NcclTransport.shm, NcclHardware.pcie, (copy_in, copy_out))


def _net_loopback(fabric: Fabric, a: GPUDevice, b: GPUDevice) -> NcclPath:
    """NET inside a node: out through the NIC nearest the sender and back in from it."""
    nics = [d.id for d in fabric.topology.devices if isinstance(d, NICDevice) and d.node == a.node]
    if not nics:
        raise SimulationError(
            f"nccl_transport 'net' needs a NIC in node {a.node} of topology "
            f"'{fabric.topology.name}', which has none"
        )
    nic = min(nics, key=lambda n: fabric.route(a.id, n).latency_s)
    legs = (fabric.route(a.id, nic), fabric.route(nic, b.id))
    return NcclPath(
        a.id, b.id, NcclTransport.net, NcclHardware.net, (_join(a.id, b.id, legs, fabric),)
    )


def _join(
    src: str,
    dst: str,
    routes: tuple[Route, ...],
    fabric: Fabric,
    extra: tuple[int, ...] = (),
    *,
    extra_first: bool = False,
) -> Route:
    """One route crossing ``routes`` in order, with ``extra`` resources (host memory) before or
    after them."""
    resources = tuple(r for route in routes for r in route.resources)
    resources = (*extra, *resources) if extra_first else (*resources, *extra)
    links = tuple(r for route in routes for r in route.links)
    caps = fabric.capacities_Bps
    return Route(
        src=src,
        dst=dst,
        resources=resources,
        latency_s=sum(route.latency_s for route in routes),
        bottleneck_Bps=min(caps[r] for r in resources),
        links=links,
    )
