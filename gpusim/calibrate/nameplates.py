"""Nameplates the forward model multiplies fractions by, read from the specs (never restated in
measurement data): a GPU component alone, or a topology (which adds links and host memory).

Links are looked up the way the simulator routes (:class:`gpusim.hardware.fabric.Fabric`, lowest
latency, never through a third GPU); a path's nameplate is its narrowest link in the direction of
the transfer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from gpusim.errors import SimulationError
from gpusim.hardware.fabric import Fabric
from gpusim.spec.hardware import GPUSpec, MemoryKind
from gpusim.spec.topology import CPUDevice, GPUDevice, LinkKind, LinkSpec, Topology
from gpusim.units import Bps_to_GBps


class NameplateError(Exception):
    """A nameplate the specs do not provide (no topology, no such link, ambiguous path)."""


@dataclass(frozen=True)
class LinkNameplate:
    """The nameplate of the links a transfer crosses."""

    kind: LinkKind
    nameplate_GBps: float
    what: str
    """Human-readable: which links, e.g. ``gpu0->pcie_sw0->cpu0 (pcie)``."""


@dataclass(frozen=True)
class Nameplates:
    """Spec numbers for one calibration: the GPU, and when given its topology."""

    gpu: GPUSpec
    label: str
    """Where the numbers come from, e.g. ``topology hgx_h100_8gpu``."""
    topology: Topology | None = None

    @classmethod
    def from_gpu(cls, gpu: GPUSpec, label: str) -> Nameplates:
        """Nameplates of a GPU alone (no link or host memory measurement can be fitted)."""
        return cls(gpu=gpu, label=label)

    @classmethod
    def from_topology(cls, topology: Topology) -> Nameplates:
        """Nameplates of a topology whose GPUs are all one model."""
        gpus = topology.gpus()
        names = sorted({g.model.name for g in gpus})
        if any(g.model != gpus[0].model for g in gpus):
            raise NameplateError(
                f"topology '{topology.name}' has several GPU models ({', '.join(names)}); a "
                "calibration describes one"
            )
        return cls(gpu=gpus[0].model, label=f"topology {topology.name}", topology=topology)

    @cached_property
    def _fabric(self) -> Fabric:
        return Fabric(self._need_topology("a link"), None)

    def _need_topology(self, what: str) -> Topology:
        if self.topology is None:
            raise NameplateError(f"{what} nameplate needs a topology (only a GPU spec is given)")
        return self.topology

    def gpu_device(self, ref: int | str | None) -> GPUDevice:
        """The topology's GPU named by a CUDA device index (declaration order) or an id;
        ``None`` is the first GPU."""
        topo = self._need_topology("a GPU device's")
        gpus = topo.gpus()
        if ref is None:
            return gpus[0]
        if isinstance(ref, int):
            if not 0 <= ref < len(gpus):
                raise NameplateError(f"GPU index {ref} out of range (topology has {len(gpus)})")
            return gpus[ref]
        for g in gpus:
            if g.id == ref:
                return g
        raise NameplateError(f"no GPU '{ref}' in topology '{topo.name}'")

    def _path(self, src: str, dst: str) -> LinkNameplate:
        fabric = self._fabric
        try:
            route = fabric.route(src, dst)
        except SimulationError as exc:
            raise NameplateError(str(exc)) from None
        resources = [fabric.resources[i] for i in route.links]
        links: list[LinkSpec] = [r.link for r in resources]
        kinds = {link.kind for link in links}
        hops = "->".join([src] + [r.dst for r in resources])
        if len(kinds) != 1:
            names = ", ".join(sorted(k.value for k in kinds))
            raise NameplateError(f"path {hops} mixes link kinds ({names}); one fraction cannot fit")
        fixed = [f"{r.src}->{r.dst}" for r in resources if r.link.efficiency is not None]
        if fixed:
            raise NameplateError(
                f"path {hops} crosses links with their own efficiency ({', '.join(fixed)}): "
                "fit against a topology with nameplate links"
            )
        kind = links[0].kind
        nameplate = Bps_to_GBps(min(r.nameplate_Bps for r in resources))
        return LinkNameplate(kind=kind, nameplate_GBps=nameplate, what=f"{hops} ({kind.value})")

    def host_path(self, gpu: int | str | None, to_gpu: bool) -> LinkNameplate:
        """The links between a GPU and its host CPU, host-to-device when ``to_gpu``."""
        dev = self.gpu_device(gpu)
        return self._path(dev.host, dev.id) if to_gpu else self._path(dev.id, dev.host)

    def gpu_pair(self, src: int | str, dst: int | str) -> LinkNameplate:
        """The links from one GPU to another."""
        return self._path(self.gpu_device(src).id, self.gpu_device(dst).id)

    def port(self, kind: LinkKind, gpu: int | str | None) -> LinkNameplate:
        """One GPU's port of ``kind``: for NVLink the sum of the GPU's NVLink links leaving it;
        for any other kind the (single) nameplate every link of that kind shares, e.g. one NIC's
        InfiniBand port."""
        topo = self._need_topology(f"the {kind.value} port")
        if kind is LinkKind.nvlink:
            dev = self.gpu_device(gpu)
            out = [
                (lk.bw_a_to_b_GBps if lk.a == dev.id else lk.bw_reverse_GBps)
                for lk in topo.links
                if lk.kind is kind and dev.id in (lk.a, lk.b)
            ]
            if not out:
                raise NameplateError(f"{dev.id} has no nvlink links in '{topo.name}'")
            return LinkNameplate(kind, sum(out), f"{dev.id}'s {len(out)} nvlink link(s)")
        rates = {bw for lk in topo.links if lk.kind is kind for bw in _both(lk)}
        if not rates:
            raise NameplateError(f"topology '{topo.name}' has no {kind.value} links")
        if len(rates) != 1:
            raise NameplateError(
                f"{kind.value} links of '{topo.name}' differ in nameplate ({sorted(rates)} GB/s)"
            )
        return LinkNameplate(kind, rates.pop(), f"one {kind.value} port of '{topo.name}'")

    def host_memory(self, gpu: int | str | None) -> tuple[MemoryKind, float, str]:
        """Kind, nameplate (GB/s) and name of the memory of a GPU's host CPU."""
        dev = self.gpu_device(gpu)
        host = self._need_topology("host memory").device(dev.host)
        if not isinstance(host, CPUDevice):  # checked by the topology's own checks
            raise NameplateError(f"{dev.id}'s host '{dev.host}' is not a CPU")
        mem = host.memory
        return mem.kind, mem.bw_GBps, f"{mem.name} of {host.id}"


def _both(link: LinkSpec) -> tuple[float, float]:
    return link.bw_a_to_b_GBps, link.bw_reverse_GBps
