"""NCCL-style collectives: the DES models against their closed forms and hand formulas on the
star fixture, rendezvous (a late rank delays exactly its peers), SM occupancy, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_profile, make_star_topology

from gpusim.engine.sim import Simulation
from gpusim.errors import SimulationError
from gpusim.execution.collectives import Collective, all_to_all, ring_all_reduce
from gpusim.execution.launch import run_cost
from gpusim.hardware.node import Node
from gpusim.kernels.collectives import (
    NcclCosts,
    all_reduce_bus_bandwidth_GBps,
    all_to_all_time_s,
    alltoall_bus_bandwidth_GBps,
    ring_all_reduce_time_s,
    send_matrix,
)
from gpusim.kernels.cost import KernelCost

# Fixture values (conftest): NVLink 450 GB/s per direction x link efficiency 0.8; the profile's
# NCCL model: 16 SMs (channels), Simple protocol base latency 8 us and 3 us per NVLink step, LL
# up to 16 x 16384 B per message. A GPU-to-GPU path is P2P over gpu -> sw -> gpu. SETUP_s is an
# extra fixed cost passed by the caller (the profile's is 0).
CAP_Bps = 450e9 * 0.8
BASE_s = 8e-6  # nccl.base_latency_us.simple
HOP_s = 3e-6  # nccl.hop_latency_us.nvlink.simple
LAT_s = BASE_s + HOP_s  # one all-to-all message of the Simple protocol
SETUP_s = 5e-6
SMS = 16
S_B = 1e6
RANKS4 = [f"gpu{i}" for i in range(4)]


def _node(n_gpus: int = 4) -> Node:
    return Node(make_star_topology(n_gpus), make_profile(), Simulation())


def _submit(node: Node, coll: Collective, delay_s: dict[str, float] | None = None) -> None:
    delay_s = delay_s or {}
    for r in coll.ranks:
        node.gpus[r].stream(0).submit(coll.name, coll.op(r), delay_s.get(r, 0.0))


def _uniform(n: int, size_B: float) -> list[list[float]]:
    return [[0.0 if i == j else size_B for j in range(n)] for i in range(n)]


def test_profile_costs() -> None:
    costs = NcclCosts.from_profile(make_profile())
    assert costs.sms == SMS
    assert costs.setup_s == 0.0  # the protocol model charges NCCL's latencies
    assert costs.host_call_s == pytest.approx(2e-6, rel=1e-12)


def test_uniform_all_to_all_matches_closed_form_and_hand_formula() -> None:
    # Every uplink gpu_i->sw carries rank i's 3 sends and every downlink sw->gpu_j rank j's 3
    # receives: each flow gets CAP/3, and all 12 start and end together.
    node = _node()
    coll = all_to_all(node, RANKS4, _uniform(4, S_B), sms=SMS, setup_s=SETUP_s)
    _submit(node, coll)
    node.sim.run()
    hand_s = SETUP_s + LAT_s + 3 * S_B / CAP_Bps
    analytic_s = all_to_all_time_s(node.fabric, RANKS4, _uniform(4, S_B), SETUP_s)
    assert analytic_s == pytest.approx(hand_s, rel=1e-12)
    for r in RANKS4:
        assert coll.entered_s[r] == 0.0
        assert coll.finish_s[r] == pytest.approx(analytic_s, rel=1e-9)
    assert coll.bytes_sent_B == pytest.approx(12 * S_B, rel=1e-12)
    carried = {s.name: s.bytes_carried for s in node.network.stats()}
    for r in RANKS4:
        assert carried[f"{r}->sw"] == pytest.approx(3 * S_B, rel=1e-9)
        assert carried[f"sw->{r}"] == pytest.approx(3 * S_B, rel=1e-9)
        assert carried[f"{r}->cpu0"] == 0.0
        assert carried[f"cpu0->{r}"] == 0.0


def test_straggler_delays_its_peers_only() -> None:
    # gpu3 neither sends to nor receives from gpu0; gpu0 enters 100 us late.
    node = _node()
    m = np.array(_uniform(4, S_B))
    m[0, 3] = m[3, 0] = 0.0
    late_s = 100e-6
    coll = all_to_all(node, RANKS4, m, sms=SMS, setup_s=SETUP_s)
    _submit(node, coll, {"gpu0": late_s})
    node.sim.run()
    assert coll.entered_s["gpu0"] == pytest.approx(late_s, rel=1e-12)
    # Without gpu0, gpu1..3 run a uniform 3-rank all-to-all: 2 flows per uplink, CAP/2 each.
    early_s = SETUP_s + LAT_s + 2 * S_B / CAP_Bps
    assert early_s < late_s
    assert coll.finish_s["gpu3"] == pytest.approx(early_s, rel=1e-9)
    assert coll.finish_s["gpu3"] == pytest.approx(
        all_to_all_time_s(node.fabric, RANKS4[1:], _uniform(3, S_B), SETUP_s), rel=1e-9
    )
    # Once gpu0 is posted, its 2 sends share gpu0->sw and its 2 receives share sw->gpu0: CAP/2.
    late_end_s = late_s + SETUP_s + LAT_s + 2 * S_B / CAP_Bps  # gpu0 pays the call latency
    for r in ("gpu0", "gpu1", "gpu2"):
        assert coll.finish_s[r] > late_s
        assert coll.finish_s[r] == pytest.approx(late_end_s, rel=1e-9)
    assert coll.bytes_sent_B == pytest.approx(10 * S_B, rel=1e-12)


def test_collective_occupies_sms_and_blocks_a_full_gpu_kernel() -> None:
    node = _node()
    coll = all_to_all(node, RANKS4, _uniform(4, S_B), sms=SMS, setup_s=SETUP_s)
    _submit(node, coll)
    gpu = node.gpus["gpu0"]
    kernel = KernelCost(
        name="full",
        flops=0.0,
        hbm_bytes=0.0,
        blocks=132,
        sms=132,
        compute_time_s=10e-6,
        floor_s=1e-6,
        hbm_achievable_Bps=1e12,
        lower_bound_s=0.0,
    )
    done = gpu.stream(1).submit("full", lambda: run_cost(gpu, kernel))
    node.sim.run()
    node.finish()
    coll_s = coll.finish_s["gpu0"]
    assert done.value == pytest.approx(coll_s + 11e-6, rel=1e-9)
    assert gpu.busy_sm_s == pytest.approx(SMS * coll_s + 132 * 11e-6, rel=1e-9)
    for r in RANKS4[1:]:
        assert node.gpus[r].busy_sm_s == pytest.approx(SMS * coll.finish_s[r], rel=1e-9)
    assert gpu.free_sms == 132


def test_busy_gpu_enters_late_and_holds_up_its_peers() -> None:
    # A kernel holding every SM of gpu0 keeps the collective's kernel out until it ends.
    node = _node()
    gpu = node.gpus["gpu0"]
    kernel = KernelCost(
        name="full",
        flops=0.0,
        hbm_bytes=0.0,
        blocks=132,
        sms=132,
        compute_time_s=20e-6,
        floor_s=0.0,
        hbm_achievable_Bps=1e12,
        lower_bound_s=0.0,
    )
    gpu.stream(1).submit("full", lambda: run_cost(gpu, kernel))
    coll = all_to_all(node, RANKS4, _uniform(4, S_B), sms=SMS, setup_s=SETUP_s)
    _submit(node, coll)
    node.sim.run()
    assert coll.entered_s["gpu0"] == pytest.approx(20e-6, rel=1e-12)
    for r in RANKS4:
        assert coll.finish_s[r] > 20e-6 + SETUP_s + LAT_s


def test_ring_all_reduce_matches_closed_form_and_hand_formula() -> None:
    # Each step every rank sends S/4 to its successor; each uplink and downlink carries one flow.
    # At 40 MB the tuner's estimate is least for Simple (LL: 341 us, LL128: 204 us, Simple 193).
    node = _node()
    size_B = 40e6
    coll = ring_all_reduce(node, RANKS4, size_B, sms=SMS, setup_s=SETUP_s)
    _submit(node, coll)
    node.sim.run()
    assert coll.plan.protocol == "simple"
    hand_s = SETUP_s + BASE_s + 2 * 3 * (HOP_s + size_B / 4 / CAP_Bps)
    analytic_s = ring_all_reduce_time_s(node.fabric, RANKS4, size_B, SETUP_s)
    assert analytic_s == pytest.approx(hand_s, rel=1e-12)
    for r in RANKS4:
        assert coll.finish_s[r] == pytest.approx(analytic_s, rel=1e-9)
    assert coll.bytes_sent_B == pytest.approx(2 * 3 * size_B, rel=1e-12)
    carried = {s.name: s.bytes_carried for s in node.network.stats()}
    for r in RANKS4:
        assert carried[f"{r}->sw"] == pytest.approx(6 * size_B / 4, rel=1e-9)


def test_ring_straggler_delays_everyone() -> None:
    node = _node()
    late_s = 100e-6
    coll = ring_all_reduce(node, RANKS4, 4e6, sms=SMS, setup_s=SETUP_s)
    _submit(node, coll, {"gpu2": late_s})
    node.sim.run()
    for r in RANKS4:
        assert coll.finish_s[r] > late_s + SETUP_s


def test_two_rank_ring() -> None:
    node = _node(2)
    ranks = ["gpu0", "gpu1"]
    coll = ring_all_reduce(node, ranks, 2e7, sms=SMS, setup_s=SETUP_s)
    _submit(node, coll)
    node.sim.run()
    hand_s = SETUP_s + BASE_s + 2 * (HOP_s + 1e7 / CAP_Bps)
    assert ring_all_reduce_time_s(node.fabric, ranks, 2e7, SETUP_s) == pytest.approx(hand_s)
    for r in ranks:
        assert coll.finish_s[r] == pytest.approx(hand_s, rel=1e-9)


@pytest.mark.parametrize("kind", ["alltoall", "allreduce"])
def test_zero_size_costs_only_setup(kind: str) -> None:
    node = _node()
    coll: Collective
    if kind == "alltoall":
        coll = all_to_all(node, RANKS4, np.zeros((4, 4)), sms=SMS, setup_s=SETUP_s)
        expected = all_to_all_time_s(node.fabric, RANKS4, np.zeros((4, 4)), SETUP_s)
    else:
        coll = ring_all_reduce(node, RANKS4, 0.0, sms=SMS, setup_s=SETUP_s)
        expected = ring_all_reduce_time_s(node.fabric, RANKS4, 0.0, SETUP_s)
    assert expected == SETUP_s
    _submit(node, coll)
    node.sim.run()
    assert coll.finish_s == dict.fromkeys(RANKS4, pytest.approx(SETUP_s, rel=1e-12))
    assert coll.bytes_sent_B == 0.0
    assert node.network.recomputations == 0


def test_single_rank_is_valid() -> None:
    node = _node(1)
    a2a = all_to_all(node, ["gpu0"], [[5e6]], sms=SMS, setup_s=SETUP_s)  # diagonal: local copy
    ar = ring_all_reduce(node, ["gpu0"], 1e6, sms=SMS, setup_s=SETUP_s, name="ar")
    _submit(node, a2a)
    _submit(node, ar)
    node.sim.run()
    assert a2a.finish_s["gpu0"] == pytest.approx(SETUP_s, rel=1e-12)
    assert ar.finish_s["gpu0"] == pytest.approx(2 * SETUP_s, rel=1e-12)  # same stream: FIFO
    assert a2a.bytes_sent_B == ar.bytes_sent_B == 0.0
    assert all_to_all_time_s(node.fabric, ["gpu0"], [[5e6]], SETUP_s) == SETUP_s
    assert ring_all_reduce_time_s(node.fabric, ["gpu0"], 1e6, SETUP_s) == SETUP_s


def test_zero_sms_occupies_nothing() -> None:
    node = _node(2)
    coll = all_to_all(node, ["gpu0", "gpu1"], _uniform(2, S_B), sms=0, setup_s=0.0)
    _submit(node, coll)
    node.sim.run()
    node.finish()
    # No channels: the LL threshold is one channel's 16384 B, so 1 MB goes Simple.
    assert coll.finish_s["gpu0"] == pytest.approx(LAT_s + S_B / CAP_Bps, rel=1e-9)
    assert node.gpus["gpu0"].busy_sm_s == 0.0


def test_bus_bandwidth_helpers() -> None:
    assert alltoall_bus_bandwidth_GBps(8e9, 1.0, 8) == pytest.approx(7.0)
    assert all_reduce_bus_bandwidth_GBps(8e9, 1.0, 8) == pytest.approx(14.0)
    assert alltoall_bus_bandwidth_GBps(8e9, 1.0, 1) == 0.0
    with pytest.raises(ValueError):
        alltoall_bus_bandwidth_GBps(1.0, 0.0, 8)


def test_invalid_inputs() -> None:
    node = _node()
    with pytest.raises(ValueError, match="3x3"):
        send_matrix([[0.0, 1.0], [1.0, 0.0]], 3)
    with pytest.raises(ValueError, match="non-negative"):
        send_matrix([[0.0, -1.0], [1.0, 0.0]], 2)
    with pytest.raises(ValueError, match="distinct"):
        all_to_all(node, ["gpu0", "gpu0"], np.zeros((2, 2)), sms=SMS, setup_s=SETUP_s)
    with pytest.raises(SimulationError, match="gpu9"):
        ring_all_reduce(node, ["gpu0", "gpu9"], 1.0, sms=SMS, setup_s=SETUP_s)
    with pytest.raises(ValueError, match="sms"):
        ring_all_reduce(node, RANKS4, 1.0, sms=133, setup_s=SETUP_s)
    coll = ring_all_reduce(node, RANKS4, 1.0, sms=SMS, setup_s=SETUP_s)
    with pytest.raises(ValueError, match="not a rank"):
        coll.op("cpu0")


@pytest.mark.parametrize("seed", range(5))
def test_random_entries_always_complete(seed: int) -> None:
    # Any send pattern and any entry times: every rank finishes, no earlier than it and each of
    # its peers were posted, and every byte is delivered.
    rng = np.random.default_rng(seed)
    node = _node()
    m = rng.uniform(0.0, 2e6, (4, 4)) * (rng.uniform(size=(4, 4)) < 0.7)
    delays = {r: float(rng.uniform(0.0, 20e-6)) for r in RANKS4}
    a2a = all_to_all(node, RANKS4, m, sms=SMS, setup_s=SETUP_s)
    ar = ring_all_reduce(node, RANKS4, float(rng.uniform(1e5, 4e6)), sms=SMS, setup_s=SETUP_s)
    _submit(node, a2a, delays)
    _submit(node, ar)
    node.sim.run()
    np.fill_diagonal(m, 0.0)
    assert a2a.bytes_sent_B == pytest.approx(m.sum(), rel=1e-9)
    assert ar.bytes_sent_B == pytest.approx(6 * ar.size_B, rel=1e-9)
    for i, r in enumerate(RANKS4):
        peers = [RANKS4[j] for j in range(4) if m[i, j] > 0 or m[j, i] > 0]
        posted = max(a2a.entered_s[p] for p in [r, *peers]) + SETUP_s + a2a.latency_s
        assert a2a.finish_s[r] >= posted - 1e-15
        assert ar.entered_s[r] == pytest.approx(a2a.finish_s[r], rel=1e-12)  # same stream
        assert ar.finish_s[r] >= max(ar.entered_s.values()) + SETUP_s
