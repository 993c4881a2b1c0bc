"""Transfers draw on device memory: a transfer that starts or ends at a GPU reads the source's
HBM and writes the destination's, in the DES and in the static max-min closed forms
(docs/memory.md). Closed forms and invariants on the test profile: links at 0.8 of nameplate,
HBM at 0.9 of the H100 fixture's 3350 GB/s."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
import simpy
from conftest import make_h100_spec, make_profile, make_star_topology

from gpusim.engine.sim import Simulation
from gpusim.execution.launch import run_cost
from gpusim.hardware.node import Node
from gpusim.hardware.platform import Platform
from gpusim.hardware.rates import gpu_rates
from gpusim.kernels.cost import KernelCost
from gpusim.kernels.gemm import gemm_cost
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.topology import Topology
from gpusim.spec.workload import GemmOp, TransfersWorkload
from gpusim.workloads import transfers

HBM_Bps = 3350e9 * 0.9
NVLINK_Bps = 450e9 * 0.8
GB = 1e9


def _workload(pairs: list[tuple[str, str, float]]) -> TransfersWorkload:
    return TransfersWorkload.model_validate(
        {
            "kind": "transfers",
            "transfers": [{"src": s, "dst": d, "bytes": b} for s, d, b in pairs],
        }
    )


def _both(topo: Topology, wl: TransfersWorkload) -> tuple[float, float]:
    profile = make_profile()
    node = Node(topo, profile, Simulation())
    des = transfers.des(node, wl, seed=0).makespan_s
    analytic = transfers.analytic(topo, profile, wl, seed=0).makespan_s
    return des, analytic


def test_a_route_draws_on_the_hbm_of_each_gpu_end_only() -> None:
    topo = make_star_topology(2)
    platform = Platform.of(topo, make_profile())
    hbm = platform.hbm_resource
    g2g = platform.route("gpu0", "gpu1")
    assert g2g.resources == (*g2g.links, hbm["gpu0"], hbm["gpu1"])
    d2h = platform.route("gpu0", "cpu0")
    assert d2h.resources == (*d2h.links, hbm["gpu0"])
    h2d = platform.route("cpu0", "gpu1")
    assert h2d.resources == (*h2d.links, hbm["gpu1"])
    assert all(platform.is_link(r) for r in g2g.links)
    assert platform.capacities_Bps[hbm["gpu0"]] == pytest.approx(HBM_Bps)


def test_a_transfer_alone_is_unchanged_when_hbm_is_far_faster_than_the_link() -> None:
    topo = make_star_topology(2)
    route = Platform.of(topo, make_profile()).route("gpu0", "gpu1")
    des, analytic = _both(topo, _workload([("gpu0", "gpu1", GB)]))
    expected = route.latency_s + GB / NVLINK_Bps
    assert des == pytest.approx(expected, rel=1e-9)
    assert analytic == pytest.approx(expected, rel=1e-9)


def test_a_transfer_is_hbm_bound_when_the_link_is_faster_than_hbm() -> None:
    topo = make_star_topology(2, link_GBps=10_000.0)  # 8000 GB/s achievable > 3015 GB/s HBM
    route = Platform.of(topo, make_profile()).route("gpu0", "gpu1")
    assert route.bottleneck_Bps == pytest.approx(HBM_Bps)
    des, analytic = _both(topo, _workload([("gpu0", "gpu1", GB)]))
    expected = route.latency_s + GB / HBM_Bps
    assert des == pytest.approx(expected, rel=1e-9)
    assert analytic == pytest.approx(expected, rel=1e-9)


def test_transfers_into_one_gpu_share_its_hbm_in_both_models() -> None:
    # three senders at link speed 8000 GB/s each into gpu0: gpu0's HBM (3015 GB/s) is shared
    # three ways, every sender's own HBM has room; equal sizes finish together
    topo = make_star_topology(4, link_GBps=10_000.0)
    lat = Platform.of(topo, make_profile()).route("gpu1", "gpu0").latency_s
    wl = _workload([(f"gpu{i}", "gpu0", GB) for i in (1, 2, 3)])
    des, analytic = _both(topo, wl)
    expected = lat + 3 * GB / HBM_Bps
    assert des == pytest.approx(expected, rel=1e-9)
    assert analytic == pytest.approx(expected, rel=1e-9)


def _kernel_beside_exchange(with_exchange: bool) -> tuple[float, Node]:
    """A memory-bound kernel (no compute time, 6 GB of HBM traffic) on gpu0, alone or beside
    a two-GPU all-to-all of copy-engine memcpys (gpu0 <-> gpu1, 4 GB each way)."""
    topo = make_star_topology(2)
    node = Node(topo, make_profile(), Simulation())
    env = node.sim.env
    end: dict[str, float] = {}

    def kernel() -> Generator[simpy.Event, Any, None]:
        yield from node.gpus["gpu0"].run_kernel("gemm", 132, 0.0, 0.0, 6 * GB)
        end["kernel"] = float(env.now)

    def copy(src: str, dst: str) -> Generator[simpy.Event, Any, None]:
        route = node.fabric.route(src, dst)
        yield from node.gpus[src].copy(route.resources, 0.0, 4 * GB, f"{src}->{dst}")

    env.process(kernel())
    if with_exchange:
        env.process(copy("gpu0", "gpu1"))
        env.process(copy("gpu1", "gpu0"))
    node.sim.run()
    node.finish()
    return end["kernel"], node


def test_a_memory_bound_kernel_beside_an_all_to_all_loses_exactly_the_hbm_the_exchange_uses() -> (
    None
):
    alone, _ = _kernel_beside_exchange(False)
    assert alone == pytest.approx(6 * GB / HBM_Bps, rel=1e-9)
    beside, node = _kernel_beside_exchange(True)
    # gpu0's HBM carries the outgoing copy's reads and the incoming copy's writes, each at the
    # NVLink rate (the link is the copies' bottleneck); the kernel gets the rest (max-min):
    # 6 GB / (3015 - 2 x 360) GB/s = 2.614 ms, while the copies (11.1 ms) are still running.
    assert beside == pytest.approx(6 * GB / (HBM_Bps - 2 * NVLINK_Bps), rel=1e-9)
    assert beside > alone
    # conservation: each HBM carried exactly the bytes the kernel and the copies account for
    stats = node.network.stats()
    hbm = node.platform.hbm_resource
    assert stats[hbm["gpu0"]].bytes_carried == pytest.approx(6 * GB + 4 * GB + 4 * GB)
    assert stats[hbm["gpu1"]].bytes_carried == pytest.approx(4 * GB + 4 * GB)
    links = sum(stats[r.index].bytes_carried for r in node.platform.links)
    hops = len(node.fabric.route("gpu0", "gpu1").links)
    assert links == pytest.approx(2 * 4 * GB * hops)


def test_hbm_bytes_are_conserved_for_an_nccl_all_to_all() -> None:
    from gpusim.execution.collectives import all_to_all

    topo = make_star_topology(4)
    node = Node(topo, make_profile(), Simulation())
    ranks = [f"gpu{i}" for i in range(4)]
    size_B = 64e6
    send = [[0.0 if i == j else size_B for j in range(4)] for i in range(4)]
    coll = all_to_all(node, ranks, send, sms=16, setup_s=0.0)
    for r in ranks:
        node.gpus[r].stream(0).submit(coll.name, coll.op(r), 0.0)
    node.sim.run()
    node.finish()
    stats = node.network.stats()
    for g in ranks:  # three messages out (read) and three in (written), whatever the protocol
        carried = stats[node.platform.hbm_resource[g]].bytes_carried
        wire = sum(
            stats[r.index].bytes_carried for r in node.platform.links if r.src == g
        )  # the wire bytes the messages put on g's outgoing link
        assert carried == pytest.approx(2 * wire)


# -- L2: library kernels' operand reads ---------------------------------------------------------

L2_Bps = 6000e9  # conftest make_profile: l2_near_read_GBps


def _kernels_side_by_side(
    costs: list[KernelCost], profile: CalibrationProfile
) -> tuple[list[float], Node]:
    """Each kernel on its own stream of gpu0, all launched at t = 0; their end times."""
    node = Node(make_star_topology(1), profile, Simulation())
    env = node.sim.env
    ends = [0.0] * len(costs)

    def run(i: int, cost: KernelCost) -> Generator[simpy.Event, Any, None]:
        yield from run_cost(node.gpus["gpu0"], cost)
        ends[i] = float(env.now)

    for i, cost in enumerate(costs):
        env.process(run(i, cost))
    node.sim.run()
    node.finish()
    return ends, node


def test_a_gemm_alone_takes_its_closed_form_and_its_operand_reads_cross_the_l2() -> None:
    rates = gpu_rates(make_h100_spec(), make_profile())
    cost = gemm_cost(GemmOp(m=4096, n=4096, k=4096), rates)
    (end,), node = _kernels_side_by_side([cost], make_profile())
    assert end == pytest.approx(cost.time_s, rel=1e-12)
    stats = node.network.stats()
    assert stats[node.platform.l2_resource["gpu0"]].bytes_carried == pytest.approx(cost.l2_bytes)
    assert stats[node.platform.hbm_resource["gpu0"]].bytes_carried == pytest.approx(cost.hbm_bytes)
    assert node.platform.capacities_Bps[node.platform.l2_resource["gpu0"]] == L2_Bps


def test_two_l2_bound_gemms_side_by_side_share_the_l2() -> None:
    # each on half the SMs of a GPU with a 2 TB/s L2: alone, a kernel's operand reads draw the
    # whole L2 (its CTAs split it 66 ways, L2-bound); together the two flows get half each
    # (max-min), while their HBM flows still finish at their compute time: each kernel ends at
    # floor + L2 bytes / (L2 / 2)
    slow_l2_Bps = 2000e9
    profile = make_profile(l2_near_GBps=slow_l2_Bps / 1e9, l2_whole_GBps=slow_l2_Bps / 1e9)
    rates = gpu_rates(make_h100_spec(), profile)
    cost = gemm_cost(GemmOp(m=4096, n=4096, k=4096), rates, sms=66)
    cap = cost.l2_bytes / cost.compute_time_s
    assert 2 * cap > slow_l2_Bps  # the pair oversubscribes the L2
    ends, node = _kernels_side_by_side([cost, cost], profile)
    expected = cost.floor_s + cost.l2_bytes / min(cap, slow_l2_Bps / 2)
    assert ends == pytest.approx([expected, expected], rel=1e-9)
    assert expected > cost.time_s
    stats = node.network.stats()
    assert stats[node.platform.l2_resource["gpu0"]].bytes_carried == pytest.approx(
        2 * cost.l2_bytes
    )
    assert stats[node.platform.l2_resource["gpu0"]].peak_load_Bps <= slow_l2_Bps * (1 + 1e-9)


def test_a_gemm_beside_an_exchange_is_slowed_by_the_hbm_the_exchange_takes() -> None:
    # a GEMM whose HBM flow needs more than what two NVLink copies leave of gpu0's HBM: it
    # streams at the remainder instead of its compute rate (and no faster than alone)
    rates = gpu_rates(make_h100_spec(), make_profile())
    cost = gemm_cost(GemmOp(m=64, n=16384, k=16384), rates)  # skinny: HBM-bound
    node = Node(make_star_topology(2), make_profile(), Simulation())
    env = node.sim.env
    end: dict[str, float] = {}

    def gemm() -> Generator[simpy.Event, Any, None]:
        yield from run_cost(node.gpus["gpu0"], cost)
        end["gemm"] = float(env.now)

    def copy(src: str, dst: str) -> Generator[simpy.Event, Any, None]:
        route = node.fabric.route(src, dst)
        yield from node.gpus[src].copy(route.resources, 0.0, 4 * GB, f"{src}->{dst}")

    env.process(gemm())
    env.process(copy("gpu0", "gpu1"))
    env.process(copy("gpu1", "gpu0"))
    node.sim.run()
    left_Bps = HBM_Bps - 2 * NVLINK_Bps
    cap = cost.hbm_bytes / cost.compute_time_s
    assert cap > left_Bps  # the GEMM wants more HBM than the copies leave it
    expected = cost.floor_s + cost.hbm_bytes / left_Bps
    assert end["gemm"] == pytest.approx(expected, rel=1e-9)
    assert end["gemm"] > cost.time_s
