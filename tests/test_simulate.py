"""End-to-end physics of simulate(): the launch model's two regimes, DES against the closed form
where nothing contends, determinism, and picklability."""

from __future__ import annotations

import json
import pickle

import pytest
from conftest import make_profile, make_scenario, make_star_topology

from gpusim import simulate
from gpusim.spec import (
    ElementwiseOp,
    Fidelity,
    GemmAllToAllWorkload,
    GemmOp,
    KernelChainWorkload,
    MemcpyOp,
    NullOp,
    Transfer,
    TransfersWorkload,
    Workload,
)

API_S = 2.0e-6  # make_profile(): launch_api_us
DOORBELL_S = 1.0e-6  # doorbell_to_start_us
SYNC_S = 1.0e-6  # sync_return_us


def _chain(kernel_floor_us: float, count: int, bytes_each: int = 0) -> float:
    kernel = ElementwiseOp(bytes_read=bytes_each, bytes_written=0) if bytes_each else NullOp()
    wl = KernelChainWorkload(kernel=kernel, count=count)
    return simulate(
        make_scenario(wl, profile=make_profile(kernel_floor_us=kernel_floor_us))
    ).makespan_s


def test_host_bound_chain_takes_n_launches() -> None:
    # Kernel 0.5 us < launch 2 us: the GPU waits for the host. Kernel i ends at i*L + D + K.
    n, kernel_s = 200, 0.5e-6
    expected = n * API_S + DOORBELL_S + kernel_s + SYNC_S
    assert _chain(0.5, n) == pytest.approx(expected, rel=1e-9)
    assert _chain(0.5, n) == pytest.approx(n * API_S, rel=0.01)


def test_gpu_bound_chain_takes_sum_of_kernels() -> None:
    # Kernel 10 us > launch 2 us: launches run ahead; kernels run back to back after the first.
    n, kernel_s = 200, 10e-6
    expected = API_S + DOORBELL_S + n * kernel_s + SYNC_S
    assert _chain(10.0, n) == pytest.approx(expected, rel=1e-9)
    assert _chain(10.0, n) == pytest.approx(n * kernel_s, rel=0.01)


def test_graph_launch_lowers_host_bound_time() -> None:
    eager = KernelChainWorkload(kernel=NullOp(), count=100, launch="eager")
    graph = KernelChainWorkload(kernel=NullOp(), count=100, launch="graph")
    prof = make_profile(kernel_floor_us=0.5)
    t_eager = simulate(make_scenario(eager, profile=prof)).makespan_s
    t_graph = simulate(make_scenario(graph, profile=prof)).makespan_s
    assert t_graph < t_eager
    # One cudaGraphLaunch (graph_launch_us 3.0 in the fixture) on the host; on the device the
    # nodes issue 1.0 us apart (graph_launch_per_kernel_us), so 0.5 us kernels stay issue-bound
    assert t_graph == pytest.approx(3e-6 + DOORBELL_S + 100 * 1e-6 + 0.5e-6 + SYNC_S, rel=1e-9)


UNCONTENDED = [
    KernelChainWorkload(kernel=NullOp(), count=50),
    KernelChainWorkload(kernel=ElementwiseOp(bytes_read=1 << 24, bytes_written=1 << 24), count=20),
    KernelChainWorkload(kernel=GemmOp(m=4096, n=4096, k=4096), count=3, launch="graph"),
    KernelChainWorkload(kernel=MemcpyOp(direction="h2d", bytes=1 << 26), count=5),
    KernelChainWorkload(kernel=MemcpyOp(direction="d2h", bytes=4096), count=50),
    GemmAllToAllWorkload(gemm=GemmOp(m=2048, n=1024, k=4096)),
    GemmAllToAllWorkload(gemm=GemmOp(m=1024, n=1024, k=512), messages_per_peer=7),
    TransfersWorkload(
        transfers=[
            Transfer(src="gpu0", dst="gpu1", bytes=10_000_000),
            Transfer(src="gpu1", dst="gpu0", bytes=3_000_000, start_us=5),
            Transfer(src="cpu0", dst="gpu0", bytes=1_000_000, start_us=1),
        ]
    ),
]


@pytest.mark.parametrize("workload", UNCONTENDED, ids=lambda w: w.kind)
def test_des_equals_analytic_without_contention(workload: Workload) -> None:
    des = simulate(make_scenario(workload, fidelity=Fidelity.des))
    ana = simulate(make_scenario(workload, fidelity=Fidelity.analytic))
    assert des.makespan_s == pytest.approx(ana.makespan_s, rel=1e-9)
    for name, value in ana.metrics.items():
        assert des.metrics[name] == pytest.approx(value, rel=1e-9, abs=1e-15), name
    assert des.link_bytes.keys() == ana.link_bytes.keys()
    for link, value in ana.link_bytes.items():
        assert des.link_bytes[link] == pytest.approx(value, rel=1e-9), link


def test_symmetric_alltoall_matches_closed_form_on_8_gpus() -> None:
    # Every uplink carries 7 equal flows, every downlink 7: each flow gets capacity/7 and all end
    # together, so the static max-min closed form is exact even though links are shared.
    wl = GemmAllToAllWorkload(gemm=GemmOp(m=4096, n=2048, k=1024), messages_per_peer=3)
    topo = make_star_topology(8)
    des = simulate(make_scenario(wl, topology=topo))
    ana = simulate(make_scenario(wl, topology=topo, fidelity=Fidelity.analytic))
    assert des.makespan_s == pytest.approx(ana.makespan_s, rel=1e-9)
    out_B = 4096 * 2048 * 2
    link_Bps = 450e9 * 0.8  # fixture: 450 GB/s nameplate, 0.8 link efficiency
    expected_a2a = 2 * 500e-9 + 100e-9 + (out_B * 7 / 8) / link_Bps
    assert des.metrics["alltoall_s"] == pytest.approx(expected_a2a, rel=1e-9)
    # each uplink carries 7/8 of its GPU's output
    assert des.link_bytes["gpu3->sw"] == pytest.approx(out_B * 7 / 8, rel=1e-9)


def test_same_seed_same_result_and_picklable() -> None:
    wl = GemmAllToAllWorkload(gemm=GemmOp(m=1024, n=1024, k=1024), messages_per_peer=4)
    a = simulate(make_scenario(wl, topology=make_star_topology(4), seed=7))
    b = simulate(make_scenario(wl, topology=make_star_topology(4), seed=7))
    assert json.dumps(a.summary()) == json.dumps(b.summary())  # byte-identical, no wall time
    assert "wall_s" not in a.summary() and a.timing()["wall_s"] >= 0
    again = pickle.loads(pickle.dumps(a))
    assert again.summary() == a.summary()


def test_trace_records_host_stream_link_and_counter_tracks() -> None:
    wl = GemmAllToAllWorkload(gemm=GemmOp(m=1024, n=1024, k=1024))
    result = simulate(make_scenario(wl, trace=True))
    assert result.trace is not None
    groups = {ev.track.group for ev in result.trace}
    kinds = {ev.kind for ev in result.trace}
    assert {"host cpu0", "gpu0", "links", "memory"} <= groups
    assert {"slice", "async", "counter"} <= kinds
    untraced = simulate(make_scenario(wl, trace=False))
    assert untraced.trace is None
    assert untraced.makespan_s == result.makespan_s


def test_memcpy_chain_closed_form() -> None:
    # star fixture: gpu0 <-> cpu0 is one PCIe link, 63 GB/s nameplate x 0.8, 1000 ns latency.
    # Copies of 64 MiB are far longer than a launch, so they run back to back after the first.
    n, size = 4, 1 << 26
    copy_s = 1000e-9 + size / (63e9 * 0.8)
    wl = KernelChainWorkload(kernel=MemcpyOp(direction="h2d", bytes=size), count=n)
    result = simulate(make_scenario(wl))
    assert result.makespan_s == pytest.approx(API_S + DOORBELL_S + n * copy_s + SYNC_S, rel=1e-9)
    assert result.metrics["sm_utilisation"] == 0.0
