"""FlowGate's closed-form transfers against the fluid network alone (``bypass=False``).

The gate times a transfer in closed form at its bound (its cap, or its route's capacity where
lower: an uncapped transfer, e.g. over InfiniBand) while the bounds in flight fit every resource
of its route; these tests check that every transfer then ends when the max-min fluid network
would end it, on random mixes of capped, uncapped and over-capped transfers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from gpusim.engine.fluid import FluidNetwork
from gpusim.engine.sim import CountingEnvironment, Simulation
from gpusim.execution.persistent import FlowGate
from gpusim.hardware.node import Node
from gpusim.result import Outcome
from gpusim.spec.loading import load_profile, load_topology
from gpusim.spec.moe import FlashMoEStrategy, MoELayerWorkload
from gpusim.workloads.moe import flashmoe
from gpusim.workloads.moe.layer import LayerGeometry, RoutedBatch

ROOT = Path(__file__).resolve().parents[1]

GBps = 1e9


def _network(capacities_Bps: list[float]) -> tuple[CountingEnvironment, FluidNetwork]:
    env = CountingEnvironment()
    net = FluidNetwork(env)
    for i, c in enumerate(capacities_Bps):
        net.add_resource(f"r{i}", c)
    return env, net


Transfer = tuple[tuple[int, ...], float, float, float]
"""route, bytes, latency (s), cap (B/s)."""
Chain = tuple[float, list[tuple[float, Transfer]]]
"""Start time (s), then per transfer: the compute time before it (s) and the transfer."""


def _run_chains(
    capacities_Bps: list[float],
    chains: list[Chain],
    *,
    bypass: bool,
) -> tuple[list[list[float]], FlowGate]:
    """Each chain starts at its time and issues its transfers one after another, each a given
    compute time after the previous one ended; returns every transfer's end time."""
    env, net = _network(capacities_Bps)
    gate = FlowGate(net, bypass=bypass)
    ends: list[list[float]] = [[] for _ in chains]

    def issue(c: int, i: int) -> None:
        steps = chains[c][1]
        if i == len(steps):
            return
        delay_s, (route, size_B, latency_s, cap_Bps) = steps[i]

        def done(_payload: object) -> None:
            ends[c].append(float(env.now))
            issue(c, i + 1)

        def start(_ev: object) -> None:
            gate.send(route, size_B, latency_s, cap_Bps, done)

        env.timeout(delay_s).callbacks.append(start)

    for c, (start_s, _steps) in enumerate(chains):
        env.timeout(start_s).callbacks.append(partial(_start_chain, issue, c))
    env.run()
    return ends, gate


def _start_chain(issue: Callable[[int, int], None], c: int, _ev: object) -> None:
    issue(c, 0)


def _random_instance(
    rng: np.random.Generator,
) -> tuple[list[float], list[Chain]]:
    """A few resources (fast ports and slow NIC-like ones) and chains of transfers over random
    routes (some crossing a resource twice): most capped well below the capacities (closed-form
    candidates), some uncapped, some capped above their route's bound."""
    n_res = int(rng.integers(3, 7))
    capacities = [float(rng.choice([50.0, 200.0, 450.0, 3000.0])) * GBps for _ in range(n_res)]
    chains: list[Chain] = []
    for _ in range(int(rng.integers(3, 12))):
        steps: list[tuple[float, Transfer]] = []
        for _ in range(int(rng.integers(1, 8))):
            k = int(rng.integers(1, 4))
            route = tuple(int(r) for r in rng.choice(n_res, size=k, replace=False))
            if rng.random() < 0.1:  # a resource crossed twice (a copy within one HBM)
                route = (*route, route[0])
            bound = min(capacities[r] / route.count(r) for r in route)
            kind = rng.random()
            if kind < 0.2:
                cap = math.inf
            elif kind < 0.3:
                cap = bound * float(rng.uniform(1.0, 3.0))
            else:
                cap = bound * float(rng.uniform(0.02, 0.5))
            size = float(rng.uniform(1e3, 1e6))
            latency = float(rng.choice([0.0, rng.uniform(0, 2e-6)]))
            steps.append((float(rng.uniform(0, 3e-6)), (route, size, latency, cap)))
        chains.append((float(rng.uniform(0, 5e-6)), steps))
    return capacities, chains


@pytest.mark.parametrize("seed", range(40))
def test_closed_form_equals_fluid_on_random_instances(seed: int) -> None:
    capacities, chains = _random_instance(np.random.default_rng(seed))
    gated, _gate = _run_chains(capacities, chains, bypass=True)
    fluid, ref = _run_chains(capacities, chains, bypass=False)
    assert ref.fluid_transfers == ref.transfers
    for a, b in zip(gated, fluid, strict=True):
        assert len(a) == len(b)
        assert a == pytest.approx(b, rel=1e-9, abs=1e-18)


def test_random_instances_exercise_the_closed_form() -> None:
    """The instances above do take the bypass, alongside uncapped transfers and conversions."""
    mixed = 0
    for seed in range(40):
        _caps, chains = _random_instance(np.random.default_rng(seed))
        _ends, gate = _run_chains(_caps, chains, bypass=True)
        if 0 < gate.fluid_transfers < gate.transfers:
            mixed += 1
    assert mixed >= 10


def test_small_loads_bypass_beside_an_uncapped_transfer() -> None:
    # r0: a 50 GB/s NIC, r1: a 3 TB/s HBM. A long uncapped transfer over both can take at most
    # 50 GB/s of r1, so 100 loads of 20 GB/s (2 TB/s) over r1 alone still fit: closed form.
    caps = [50 * GBps, 3000 * GBps]
    big: Chain = (0.0, [(0.0, ((0, 1), 1e7, 0.0, math.inf))])
    small: list[Chain] = [(1e-6 * i, [(0.0, ((1,), 2e4, 1e-7, 20 * GBps))]) for i in range(100)]
    gated, gate = _run_chains(caps, [big, *small], bypass=True)
    fluid, _ = _run_chains(caps, [big, *small], bypass=False)
    assert gate.fluid_transfers == 0  # the uncapped one too: it is alone on the NIC
    assert gated[0] == pytest.approx([1e7 / (50 * GBps)], rel=1e-12)
    for a, b in zip(gated, fluid, strict=True):
        assert a == pytest.approx(b, rel=1e-12)


def test_uncapped_alone_is_timed_at_its_route_bound_and_moved_when_shared() -> None:
    caps = [50 * GBps, 3000 * GBps]
    first: Chain = (0.0, [(0.0, ((0, 1), 1e6, 0.0, math.inf))])
    gated, gate = _run_chains(caps, [first], bypass=True)
    assert gate.fluid_transfers == 0
    assert gated[0] == pytest.approx([1e6 / (50 * GBps)], rel=1e-15)
    # a second transfer over the NIC halfway: both share it, and the first moves to the fluid
    second: Chain = (1e-5, [(0.0, ((0,), 1e6, 0.0, 40 * GBps))])
    gated, gate = _run_chains(caps, [first, second], bypass=True)
    fluid, _ = _run_chains(caps, [first, second], bypass=False)
    assert gate.fluid_transfers == 2
    assert gated[0][0] > 1e6 / (50 * GBps)
    for a, b in zip(gated, fluid, strict=True):
        assert a == pytest.approx(b, rel=1e-12)


def test_a_resource_crossed_twice_bounds_at_half_its_capacity() -> None:
    # an uncapped copy within one HBM (read and write) can draw at most half of it; the fluid
    # network's general solve says so (max_min_fair_rates' one-class case alone counts the
    # resource once, so the gate hands the fluid network the bound as the cap)
    caps = [100 * GBps]
    copy: Chain = (0.0, [(0.0, ((0, 0), 1e6, 0.0, math.inf))])
    gated, gate = _run_chains(caps, [copy], bypass=True)
    fluid, _ = _run_chains(caps, [copy], bypass=False)
    assert gate.fluid_transfers == 0
    assert gated[0] == pytest.approx([1e6 / (50 * GBps)], rel=1e-15)
    assert fluid[0] == pytest.approx(gated[0], rel=1e-12)


def _two_node_flashmoe(seed: int, *, bypass: bool) -> Outcome:
    """FlashMoE on two GPUs of each of two HGX nodes over InfiniBand (shipped topology), random
    routing: its RDMA puts are uncapped, beside the capped HBM loads and NVLink writes."""
    topology = load_topology(ROOT / "topologies" / "h100_2node_ib.json")
    profile = load_profile(ROOT / "topologies" / "profiles" / "h100_sxm.json")
    gpus = ["n0.gpu0", "n0.gpu1", "n1.gpu0", "n1.gpu1"]
    tokens, experts = 1024, 8
    strategy = FlashMoEStrategy()
    wl = MoELayerWorkload(
        tokens_per_gpu=tokens,
        hidden=1024,
        intermediate=1024,
        experts=experts,
        top_k=2,
        capacity_factor=1.0,
        strategy=strategy,
    )
    geometry = LayerGeometry.of(wl, gpus, strategy.dtype)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(2 * tokens, np.full(experts, 1.0 / experts), size=len(gpus))
    batch = RoutedBatch(counts=counts, dropped=0, maxvio_batch=0.0)
    node = Node(topology, profile, Simulation())
    return flashmoe.des(node, wl, geometry, batch, flow_bypass=bypass)


@pytest.mark.parametrize("seed", [0, 1])
def test_two_node_flashmoe_closed_form_equals_the_fluid_network(seed: int) -> None:
    gated = _two_node_flashmoe(seed, bypass=True)
    fluid = _two_node_flashmoe(seed, bypass=False)
    # HBM loads share the HBMs with uncapped RDMA puts and still take the closed form (when an
    # uncapped put blocked it on its whole route, about 95 % of the transfers went to the fluid)
    assert gated.metrics["fluid_transfer_fraction"] < 0.5
    assert gated.makespan_s == pytest.approx(fluid.makespan_s, rel=1e-9)
    for g in gated.per_gpu:
        assert gated.per_gpu[g]["end_s"] == pytest.approx(fluid.per_gpu[g]["end_s"], rel=1e-9)
