"""What both fidelities of one run share: the GPU's rates, the memory plan, the pass costs of
both models, the weight stream's route, and the strategy program with its seeded draft model."""

from __future__ import annotations

from dataclasses import dataclass

from gpusim.errors import SimulationError
from gpusim.execution.host_costs import HostCosts
from gpusim.hardware.platform import Platform
from gpusim.hardware.rates import GPURates
from gpusim.spec.hardware import MemoryKind
from gpusim.spec.model_zoo import TransformerModel
from gpusim.spec.speculative import SpeculativeDecodingWorkload
from gpusim.spec.topology import CPUDevice, StorageDevice
from gpusim.units import MB, GBps_to_Bps, ns_to_s, us_to_s
from gpusim.workloads.speculative.costs import (
    HostDriver,
    MemoryPlan,
    PassCost,
    PassCosts,
    memory_plan,
)
from gpusim.workloads.speculative.draft import DraftSampler
from gpusim.workloads.speculative.llmcad import llmcad
from gpusim.workloads.speculative.strategies import Program, Tally, specinfer, target_only, vanilla
from gpusim.workloads.speculative.timing import PassShape

LOADER_SHARE_MAX = 0.5
"""The most of the CPU a loader thread takes from the thread driving the GPU while both run:
one Python interpreter lock, handed between runnable threads at its switch interval, gives each
at least half (ASSUMPTION: equal turns; docs/speculative_decoding.md)."""


@dataclass(frozen=True)
class Setup:
    """One run's static inputs."""

    wl: SpeculativeDecodingWorkload
    gpu: str
    source: str
    rates: GPURates
    plan: MemoryPlan
    target: PassCosts
    draft: PassCosts | None
    route_resources: tuple[int, ...]
    """What a weight load draws on besides its source: the route's links and the GPU's HBM."""
    stream_links: tuple[int, ...]
    source_index: int | None
    """The platform's resource of the source CPU's memory; None for a storage device, whose
    read rate the DES adds as a resource of its own."""
    source_Bps: float
    """The source's achievable read rate."""
    load_latency_s: float
    load_Bps: float
    """Uncontended load rate: the slowest of the route's links and the source."""
    loader_cpu_s_per_B: float
    """Host CPU time a weight load takes from the thread driving the GPU, per byte
    (``storage_io.host_cpu_us_per_MB`` for a storage source and a host-driven runtime, else
    0: DMA from a CPU's memory, or a runtime whose GPU work does not wait on that thread)."""
    host_slowdown: float
    """How much longer host work takes while a weight load runs: ``1 / (1 - share)``, the
    loader's share of the CPU (the load rate x :attr:`loader_cpu_s_per_B`, at most
    :data:`LOADER_SHARE_MAX`)."""

    @classmethod
    def of(cls, platform: Platform, wl: SpeculativeDecodingWorkload) -> Setup:
        """The setup of ``wl`` on ``platform``."""
        gpu = wl.gpu_id(platform.topology)
        source = wl.source_id(platform.topology)
        rates = platform.gpu_rates(gpu)
        route = platform.route(source, gpu)
        index, source_Bps = source_tier(platform, source)
        host = None
        if wl.runtime != "ideal":
            costs = HostCosts.from_profile(platform.profile)
            host = HostDriver(platform, gpu, wl.runtime == "pytorch_eager", costs)
        draft = None if wl.draft is None else pass_costs(wl, wl.draft, rates, host)
        load_Bps = min(route.bottleneck_Bps, source_Bps)
        loader_s_per_B = 0.0 if host is None else loader_cpu_s_per_B(platform, source)
        return cls(
            wl=wl,
            gpu=gpu,
            source=source,
            rates=rates,
            plan=memory_plan(wl, rates),
            target=pass_costs(wl, wl.target, rates, host),
            draft=draft,
            route_resources=route.resources,
            stream_links=route.links,
            source_index=index,
            source_Bps=source_Bps,
            load_latency_s=route.latency_s + source_latency_s(platform, source),
            load_Bps=load_Bps,
            loader_cpu_s_per_B=loader_s_per_B,
            host_slowdown=1.0 / (1.0 - min(LOADER_SHARE_MAX, load_Bps * loader_s_per_B)),
        )

    @property
    def pipelined(self) -> bool:
        """Whether target passes overlap loads with compute (every strategy but ``std``)."""
        return self.wl.strategy != "std"

    def layer(self, tokens: int) -> PassCost:
        """One target layer's share of its pass over ``tokens`` tokens."""
        return self.target.of(tokens).share(1.0 / self.plan.layers)

    def streamed_layer(self, tokens: int) -> PassCost:
        """A streamed layer's compute: in a pipelined pass it runs beside the next layer's
        load, whose host CPU time (:attr:`loader_cpu_s_per_B` x a layer's bytes) it loses
        (``std`` loads and computes in turn: nothing to lose)."""
        layer = self.layer(tokens)
        extra = self.plan.layer_B * self.loader_cpu_s_per_B if self.pipelined else 0.0
        if extra == 0.0:
            return layer
        return PassCost(layer.time_s + extra, layer.floor_s + extra, layer.hbm_bytes, layer.flops)

    def provisional_step(self) -> PassCost:
        """One provisional draft step: it runs only while weights load, its host work slowed
        by :attr:`host_slowdown`."""
        return self.draft_costs().of(1, self.host_slowdown)

    def pass_shape(self, tokens: int) -> PassShape:
        """The target pass over ``tokens`` tokens, uncontended."""
        plan = self.plan
        return PassShape(
            resident_layers=plan.resident_layers,
            streamed_layers=plan.streamed_layers,
            layer_compute_s=self.layer(tokens).time_s,
            streamed_compute_s=self.streamed_layer(tokens).time_s,
            layer_load_s=self.load_latency_s + plan.layer_B / self.load_Bps,
            buffers=plan.buffers,
        )

    def draft_costs(self) -> PassCosts:
        """The draft's pass costs (a strategy that drafts has a draft model)."""
        if self.draft is None:
            raise AssertionError("a drafting strategy without a draft model")
        return self.draft


def pass_costs(
    wl: SpeculativeDecodingWorkload,
    model: TransformerModel,
    rates: GPURates,
    host: HostDriver | None,
) -> PassCosts:
    """``model``'s pass costs at the run's middle context: its prompt as
    :meth:`~SpeculativeDecodingWorkload.prompt_positions` places it plus half the generated
    tokens (an encoder-decoder's cross-attention reading the prompt), issued by ``host``."""
    start, encoder = wl.prompt_positions(model)
    return PassCosts(model, rates, wl.dtype, start + wl.generated_tokens // 2, encoder, host)


def source_tier(platform: Platform, source: str) -> tuple[int | None, float]:
    """The resource index (None for storage) and achievable read rate of the weights' source:
    a CPU's memory as the fabric has it, or a storage device's rated bandwidth times the
    profile's ``memory_efficiency.storage``."""
    device = platform.topology.device(source)
    if isinstance(device, CPUDevice):
        memory = platform.fabric.host_memory[source]
        return memory.index, memory.capacity_Bps
    if not isinstance(device, StorageDevice):
        raise SimulationError(f"'{source}' is not a CPU or storage device")
    fraction = platform.profile.memory_efficiency.get(MemoryKind.storage)
    if fraction is None:
        raise SimulationError(
            f"profile '{platform.profile.id}' has no memory_efficiency for 'storage' memory"
        )
    return None, GBps_to_Bps(device.memory.bw_GBps) * fraction.value


def loader_cpu_s_per_B(platform: Platform, source: str) -> float:
    """Host CPU seconds per byte a load from ``source`` costs the process: the profile's
    ``storage_io`` for a storage device (0 without it), 0 for a CPU's memory (DMA)."""
    io = platform.profile.storage_io
    if io is None or not isinstance(platform.topology.device(source), StorageDevice):
        return 0.0
    return us_to_s(io.host_cpu_us_per_MB.value) / MB


def source_latency_s(platform: Platform, source: str) -> float:
    """A storage device's access latency before a load's first byte (0 for a CPU's memory: the
    fabric's route latency covers it)."""
    device = platform.topology.device(source)
    return ns_to_s(device.memory.latency_ns) if isinstance(device, StorageDevice) else 0.0


def program(wl: SpeculativeDecodingWorkload, seed: int) -> tuple[Program, Tally]:
    """The strategy's request program and the tally it fills, its draft model seeded by
    ``seed`` (the same draws in both fidelities)."""
    tally = Tally()
    positions = wl.generated_tokens + 2 * wl.tree_size + 2  # a tree and provisional tokens
    sampler = DraftSampler(wl.behaviour, seed, positions)
    if wl.strategy in ("std", "std_pl"):
        return target_only(wl, tally), tally
    if wl.strategy == "sp":
        return vanilla(wl, tally, sampler), tally
    if wl.strategy == "specinfer":
        return specinfer(wl, tally, sampler), tally
    return llmcad(wl, tally, sampler), tally


__all__ = ["Setup", "program"]
