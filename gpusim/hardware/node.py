"""A running node (or cluster): fabric resources in a fluid network, GPUs and host threads."""

from __future__ import annotations

from gpusim.engine.fluid import FluidNetwork
from gpusim.engine.sim import Simulation
from gpusim.hardware.fabric import Fabric
from gpusim.hardware.gpu import GPURuntime
from gpusim.hardware.host import HostThread
from gpusim.hardware.rates import gpu_rates
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.topology import Topology


class Node:
    """Everything a workload drives: the network, the GPUs by id and the host threads."""

    def __init__(self, topology: Topology, profile: CalibrationProfile, sim: Simulation) -> None:
        self.topology = topology
        self.profile = profile
        self.sim = sim
        self.fabric = Fabric(topology, profile)
        self.network = FluidNetwork(sim.env, sim.recorder)
        for res in self.fabric.resources:
            index = self.network.add_resource(res.name, res.capacity_Bps)
            assert index == res.index  # fabric and network share resource indices
        for mem in self.fabric.host_memory.values():
            index = self.network.add_resource(mem.name, mem.capacity_Bps, group="memory")
            assert index == mem.index
        self.gpus: dict[str, GPURuntime] = {
            g.id: GPURuntime(g.id, gpu_rates(g.model, profile), sim.env, self.network, sim.recorder)
            for g in topology.gpus()
        }
        self.host_of: dict[str, str] = {g.id: g.host for g in topology.gpus()}
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
