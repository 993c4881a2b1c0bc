"""NCCL transports and protocols: which path a message takes (P2P, SHM through host memory,
NET), what limits SHM, how achieved bandwidth grows with message size, all-gather and
reduce-scatter, and the DES against the closed forms where nothing contends."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_profile, make_star_topology
from typer.testing import CliRunner

from gpusim.cli import app
from gpusim.engine.sim import Simulation
from gpusim.errors import SimulationError
from gpusim.execution.collectives import (
    Collective,
    all_gather,
    all_to_all,
    reduce_scatter,
    ring_all_reduce,
)
from gpusim.hardware.fabric import Fabric
from gpusim.hardware.node import Node
from gpusim.hardware.transport import nccl_path
from gpusim.kernels.collectives import (
    all_gather_bus_bandwidth_GBps,
    all_gather_time_s,
    all_to_all_time_s,
    reduce_scatter_time_s,
    ring_all_reduce_time_s,
    ring_plan,
)
from gpusim.kernels.nccl import NcclProtocolModel
from gpusim.spec.loading import load_topology
from gpusim.spec.topology import NcclTransport, Topology

# Test profile (conftest): links at 0.8 of nameplate, host memory at 0.9; NCCL: 16 channels,
# base latency LL / LL128 / Simple 5 / 10 / 8 us, per-step latency NVLink 0.5 / 1.5 / 3 us and
# PCIe (also SHM) 1 / 2 / 5 us, wire fractions 0.5 / 0.9 / 1.
NVLINK_Bps = 450e9 * 0.8
PCIE_Bps = 63e9 * 0.8
SIMPLE_BASE_s = 8e-6
PCIE_SIMPLE_HOP_s = 5e-6
SMS = 16
RANKS4 = [f"gpu{i}" for i in range(4)]
TOPOLOGIES = Path(__file__).resolve().parents[1] / "topologies"


def _topology(
    n_gpus: int, transport: str = "auto", *, mem_GBps: float = 300.0, nvlink_GBps: float = 450.0
) -> Topology:
    topo = make_star_topology(n_gpus, link_GBps=nvlink_GBps)
    cpu = topo.cpus()[0]
    memory = cpu.memory.model_copy(update={"bw_GBps": mem_GBps})
    devices = [
        d.model_copy(update={"memory": memory}) if d.id == cpu.id else d for d in topo.devices
    ]
    return topo.model_copy(update={"devices": devices, "nccl_transport": NcclTransport(transport)})


def _node(topo: Topology) -> Node:
    return Node(topo, make_profile(), Simulation())


def _run(node: Node, coll: Collective) -> None:
    for r in coll.ranks:
        node.gpus[r].stream(0).submit(coll.name, coll.op(r), 0.0)
    node.sim.run()


def _uniform(n: int, size_B: float) -> list[list[float]]:
    return [[0.0 if i == j else size_B for j in range(n)] for i in range(n)]


def test_transport_follows_the_topology_and_can_be_forced() -> None:
    fabric = Fabric(_topology(2), make_profile())
    p2p = nccl_path(fabric, "gpu0", "gpu1")
    assert (p2p.transport, p2p.hardware, len(p2p.legs)) == ("p2p", "nvlink", 1)
    shm = nccl_path(Fabric(_topology(2, "shm"), make_profile()), "gpu0", "gpu1")
    assert (shm.transport, shm.hardware, len(shm.legs)) == ("shm", "pcie", 2)
    mem = fabric.host_memory["cpu0"].index
    names = [fabric.resources[r].name for leg in shm.legs for r in leg.links]
    assert names == ["gpu0->cpu0", "cpu0->gpu1"]
    assert all(mem in leg.resources for leg in shm.legs)  # written, then read
    with pytest.raises(SimulationError, match="NIC"):
        nccl_path(Fabric(_topology(2, "net"), make_profile()), "gpu0", "gpu1")


def test_gpus_across_sockets_without_nvlink_use_shm_over_the_socket_link() -> None:
    # h100_pcie_4gpu: NVLink bridges pair gpu0-gpu1 and gpu2-gpu3; gpu0 and gpu2 meet only
    # through both host bridges, beyond NCCL's default P2P level (PXB).
    topo = load_topology(TOPOLOGIES / "h100_pcie_4gpu.json")
    fabric = Fabric(topo, make_profile())
    assert nccl_path(fabric, "gpu0", "gpu1").transport == "p2p"
    shm = nccl_path(fabric, "gpu0", "gpu2")
    assert shm.transport == "shm"
    out = [fabric.resources[r].name for r in shm.legs[1].links]
    assert out[0] == "cpu0->cpu1" and out[-1].endswith("->gpu2")


def test_between_nodes_nccl_uses_net() -> None:
    topo = load_topology(TOPOLOGIES / "h100_2node_ib.json")
    gpus = [g.id for g in topo.gpus()]
    a = gpus[0]
    b = next(g for g in gpus if topo.device(g).node != topo.device(a).node)
    path = nccl_path(Fabric(topo, make_profile()), a, b)
    assert (path.transport, path.hardware) == ("net", "net")


def test_forced_transport_changes_the_path_in_the_des() -> None:
    carried = {}
    for transport in ("p2p", "shm"):
        node = _node(_topology(2, transport))
        _run(node, all_to_all(node, ["gpu0", "gpu1"], _uniform(2, 4e6), sms=SMS, setup_s=0.0))
        carried[transport] = {s.name: s.bytes_carried for s in node.network.stats()}
    assert carried["p2p"]["gpu0->sw"] == pytest.approx(4e6)
    assert carried["p2p"]["gpu0->cpu0"] == 0.0
    assert carried["p2p"]["cpu0.memory"] == 0.0
    assert carried["shm"]["gpu0->sw"] == 0.0
    assert carried["shm"]["gpu0->cpu0"] == pytest.approx(4e6)
    assert carried["shm"]["cpu0->gpu1"] == pytest.approx(4e6)
    assert carried["shm"]["cpu0.memory"] == pytest.approx(4 * 4e6)  # 2 messages x write + read


@pytest.mark.parametrize(("mem_GBps", "bound"), [(300.0, "pcie"), (40.0, "memory")])
def test_shm_all_to_all_is_limited_by_pcie_and_host_memory_not_nvlink(
    mem_GBps: float, bound: str
) -> None:
    # 2 GPUs, 8 MB each way: four legs cross the host memory (two writes, two reads); each
    # PCIe direction carries one leg. 300 GB/s memory: 270 / 4 > 50.4 (PCIe-bound); 40 GB/s:
    # 36 / 4 = 9 < 50.4 (memory-bound). NVLink's capacity plays no part.
    size_B = 8e6
    mem_leg_Bps = mem_GBps * 1e9 * 0.9 / 4
    rate_Bps = min(PCIE_Bps, mem_leg_Bps)
    assert (rate_Bps == PCIE_Bps) == (bound == "pcie")
    hand_s = SIMPLE_BASE_s + PCIE_SIMPLE_HOP_s + size_B / rate_Bps
    for nvlink_GBps in (450.0, 900.0):
        topo = _topology(2, "shm", mem_GBps=mem_GBps, nvlink_GBps=nvlink_GBps)
        fabric = Fabric(topo, make_profile())
        analytic_s = all_to_all_time_s(fabric, ["gpu0", "gpu1"], _uniform(2, size_B), 0.0)
        assert analytic_s == pytest.approx(hand_s, rel=1e-12)
        node = _node(topo)
        coll = all_to_all(node, ["gpu0", "gpu1"], _uniform(2, size_B), sms=SMS, setup_s=0.0)
        _run(node, coll)
        assert coll.finish_s["gpu0"] == pytest.approx(hand_s, rel=1e-9)
    p2p_s = all_to_all_time_s(
        Fabric(_topology(2, mem_GBps=mem_GBps), make_profile()),
        ["gpu0", "gpu1"],
        _uniform(2, size_B),
        0.0,
    )
    assert p2p_s < hand_s / 3


def test_all_gather_moves_n_minus_1_shares_into_each_rank() -> None:
    # Megatron's allgather dispatcher: every rank gathers the others' T x H hidden states.
    n, tokens, hidden, bytes_per = 4, 512, 2048, 2
    share_B = tokens * hidden * bytes_per
    node = _node(_topology(n))
    coll = all_gather(node, RANKS4, n * share_B, sms=SMS, setup_s=0.0)
    _run(node, coll)
    for r in RANKS4:
        assert coll.bytes_received_B[r] == pytest.approx((n - 1) * share_B, rel=1e-12)
    assert coll.bytes_sent_B == pytest.approx(n * (n - 1) * share_B, rel=1e-12)


@pytest.mark.parametrize("transport", ["p2p", "shm"])
@pytest.mark.parametrize("kind", ["alltoall", "allgather", "reducescatter", "allreduce"])
@pytest.mark.parametrize("size_B", [4e3, 3e5, 4e7])
def test_analytic_equals_des_where_nothing_contends(
    transport: str, kind: str, size_B: float
) -> None:
    node = _node(_topology(4, transport))
    coll: Collective
    if kind == "alltoall":
        m = _uniform(4, size_B / 4)
        coll = all_to_all(node, RANKS4, m, sms=SMS, setup_s=1e-6)
        expected_s = all_to_all_time_s(node.fabric, RANKS4, m, 1e-6)
    else:
        make, closed = {
            "allgather": (all_gather, all_gather_time_s),
            "reducescatter": (reduce_scatter, reduce_scatter_time_s),
            "allreduce": (ring_all_reduce, ring_all_reduce_time_s),
        }[kind]
        coll = make(node, RANKS4, size_B, sms=SMS, setup_s=1e-6)
        expected_s = closed(node.fabric, RANKS4, size_B, 1e-6)
    _run(node, coll)
    for r in RANKS4:
        assert coll.finish_s[r] == pytest.approx(expected_s, rel=1e-9)


def test_bandwidth_rises_with_size_and_small_messages_are_latency_bound() -> None:
    fabric = Fabric(_topology(8), make_profile())
    ranks = [f"gpu{i}" for i in range(8)]
    sizes_B = [2.0**k for k in range(10, 31)]  # 1 KiB .. 1 GiB
    bus_GBps = [
        all_gather_bus_bandwidth_GBps(s, all_gather_time_s(fabric, ranks, s, 0.0), 8)
        for s in sizes_B
    ]
    assert all(b2 > b1 for b1, b2 in itertools.pairwise(bus_GBps))
    assert bus_GBps[-1] == pytest.approx(NVLINK_Bps / 1e9, rel=0.02)  # Simple, toward the link
    assert bus_GBps[0] < 0.01 * NVLINK_Bps / 1e9
    # 1 KiB: the time is the LL latency (base + 7 steps) to within 1 %.
    ll_latency_s = 5e-6 + 7 * 0.5e-6
    assert all_gather_time_s(fabric, ranks, 1024.0, 0.0) == pytest.approx(ll_latency_s, rel=0.01)
    # The tuner's choice moves from LL to LL128 to Simple as the size grows.
    model = NcclProtocolModel.from_profile(make_profile())
    chosen = [ring_plan(fabric, ranks, 7, s / 8, model).protocol.value for s in sizes_B]
    assert chosen[0] == "ll" and chosen[-1] == "simple" and "ll128" in chosen
    first = {p: chosen.index(p) for p in ("ll", "ll128", "simple")}
    assert first["ll"] < first["ll128"] < first["simple"]


def test_all_to_all_protocol_follows_nccl_p2p_threshold() -> None:
    # LL up to 16 channels x 16384 B per message, Simple above: the wire carries twice the data
    # under LL (a flag per data word).
    for size_B, wire in ((16 * 16384.0, 2.0), (16 * 16384.0 + 1, 1.0)):
        node = _node(_topology(2))
        _run(node, all_to_all(node, ["gpu0", "gpu1"], _uniform(2, size_B), sms=SMS, setup_s=0.0))
        carried = {s.name: s.bytes_carried for s in node.network.stats()}
        assert carried["gpu0->sw"] == pytest.approx(wire * size_B, rel=1e-12)


def test_options_force_the_transport_and_a_bad_value_is_one_line(tmp_path: Path) -> None:
    doc = {
        "name": "transport-test",
        "topology": make_star_topology(2).model_dump(mode="json"),
        "workload": {
            "kind": "transfers",
            "transfers": [{"src": "gpu0", "dst": "gpu1", "bytes": 1000}],
        },
        "profile": make_profile().model_dump(mode="json"),
        "options": {"nccl_transport": "pigeon"},
    }
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(doc))
    result = CliRunner().invoke(app, ["run", str(path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert str(path) in lines[0] and "$.options.nccl_transport" in lines[0]
    doc["options"] = {"nccl_transport": "shm"}
    path.write_text(json.dumps(doc))
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output


def test_host_memory_is_a_resource_of_the_fabric() -> None:
    fabric = Fabric(_topology(2, mem_GBps=200.0), make_profile())
    mem = fabric.host_memory["cpu0"]
    assert mem.name == "cpu0.memory"
    assert mem.index == len(fabric.resources)
    assert fabric.capacities_Bps[mem.index] == pytest.approx(200e9 * 0.9)
    assert np.isclose(
        Fabric(_topology(2, mem_GBps=200.0), None).host_memory["cpu0"].capacity_Bps, 200e9
    )


@pytest.mark.parametrize("fidelity", ["des", "analytic"])
def test_scenario_option_reaches_the_collectives(fidelity: str) -> None:
    # FM-2's Megatron layer on 2 H100 SXM: NVLink P2P by default; forced SHM sends both
    # all-to-alls through PCIe and host memory, so the layer gets slower.
    from gpusim.simulate import resolve, simulate
    from gpusim.spec.scenario import Options

    base = resolve(Path(__file__).resolve().parents[1] / "workloads/moe_fm2_megatron_2xh100.json")
    latency_s = {}
    for transport in (None, "p2p", "shm"):
        opts = Options(fidelity=fidelity, nccl_transport=transport)
        result = simulate(base.model_copy(update={"options": opts}))
        latency_s[transport] = result.metrics["forward_latency_s"]
    assert latency_s[None] == latency_s["p2p"]
    assert latency_s["shm"] > 1.5 * latency_s["p2p"]
