"""A running node (or cluster): its platform's resources in a fluid network, GPUs and host
threads."""

from __future__ import annotations

from gpusim.engine.fluid import FluidNetwork
from gpusim.engine.sim import Simulation
from gpusim.hardware.gpu import GPURuntime
from gpusim.hardware.host import HostThread
from gpusim.hardware.platform import LINK_GROUP, MEMORY_GROUP, Platform
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.topology import Topology


class Node:
    """Everything a workload drives: the network, the GPUs by id and the host threads, over the
    shared static :class:`Platform` of the topology and profile."""

    def __init__(self, topology: Topology, profile: CalibrationProfile, sim: Simulation) -> None:
        self.platform = Platform.of(topology, profile)
        self.topology = topology
        self.profile = profile
        self.sim = sim
        self.fabric = self.platform.fabric
        self.network = FluidNetwork(sim.env, sim.recorder)
        for link in self.platform.links:
            index = self.network.add_resource(link.name, link.capacity_Bps, group=LINK_GROUP)
            assert index == link.index  # the platform numbers the network's resources
        for mem in self.fabric.host_memory.values():
            index = self.network.add_resource(mem.name, mem.capacity_Bps, group=MEMORY_GROUP)
            assert index == mem.index
        self.gpus: dict[str, GPURuntime] = {}
        for g in topology.gpus():
            memory = self.fabric.hbm[g.id]
            shared = None if memory.shared_with is None else memory.index  # unified memory
            rates = self.platform.rates[g.id]
            gpu = GPURuntime(g.id, rates, sim.env, self.network, sim.recorder, shared)
            assert gpu.hbm == self.platform.hbm_resource[g.id]
            self.gpus[g.id] = gpu
        for g in topology.gpus():
            res = self.platform.resources[self.platform.l2_resource[g.id]]
            gpu = self.gpus[g.id]
            gpu.l2 = self.network.add_resource(res.name, res.capacity_Bps, group=MEMORY_GROUP)
            assert gpu.l2 == res.index
        self.host_of: dict[str, str] = self.platform.host_of
        self._threads: dict[tuple[str, str], HostThread] = {}

    def host_thread(self, cpu_id: str, name: str) -> HostThread:
        """The host thread ``name`` on CPU ``cpu_id`` (created on first use)."""
        key = (cpu_id, name)
        thread = self._threads.get(key)
        if thread is None:
            thread = HostThread(cpu_id, name, self.sim.env, self.sim.recorder)
            self._threads[key] = thread
        return thread

    def threads(self) -> list[HostThread]:
        """Every host thread used so far."""
        return list(self._threads.values())

    def finish(self) -> None:
        """Close time integrals at the end of the run."""
        for gpu in self.gpus.values():
            gpu.finish()
