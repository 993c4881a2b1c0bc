"""FlashMoE's persistent kernel: closed forms on one GPU, occupancy-derived grid, payload,
task counts, stragglers, scheduler serialisation, batched tasks, exact flow bypass,
determinism."""

from __future__ import annotations

import itertools
import math
from collections.abc import Generator
from typing import Any

import numpy as np
import pytest
import simpy
from conftest import FIXTURE, make_h100_spec, make_profile, make_star_topology

from gpusim.engine.sim import Simulation
from gpusim.errors import SimulationError
from gpusim.execution.persistent import (
    DeviceTimes,
    FlowGate,
    PersistentGrid,
    PersistentKernel,
    TaskGroup,
)
from gpusim.hardware.node import Node
from gpusim.hardware.rates import gpu_rates
from gpusim.kernels.mainloop import MainloopShare
from gpusim.kernels.tile_gemm import (
    block_stream_Bps,
    combine_tile_bytes,
    combine_tile_time_s,
    tile_gemm_time_s,
)
from gpusim.result import Outcome
from gpusim.spec.base import Dtype
from gpusim.spec.hardware import HostCPUSpec, MemoryKind, MemoryTierSpec
from gpusim.spec.moe import FlashMoEStrategy, MegatronStrategy, MoELayerWorkload
from gpusim.spec.profile import CalibrationProfile, InstructionPath, Measured
from gpusim.spec.resources import KernelResources
from gpusim.spec.topology import (
    CPUDevice,
    Device,
    GPUDevice,
    LinkKind,
    LinkSpec,
    NICDevice,
    SwitchDevice,
    SwitchType,
    Topology,
)
from gpusim.workloads.moe import flashmoe
from gpusim.workloads.moe.layer import LayerGeometry, RoutedBatch

# Fixture values (tests/conftest.py): make_h100_spec, make_profile() and make_star_topology().
TF32_PEAK = 494.7e12
MMA_SYNC = 0.75 * 0.6
SMS = 132
HBM_Bps = 3350e9 * 0.9
L2_NEAR_Bps = 6000e9  # conftest make_profile defaults
L2_HIT_S = 200e-9
HBM_LAT_S = 300e-9
SMEM_Bps = 128 * 1830e6  # 128 B per clock at the H100 fixture's 1,830 MHz


def _tile_s(k: int, blocks_per_sm: int = 2, streaming: int = 2 * SMS - 1) -> float:
    """FlashMoE's 128 x 64 TF32 tile by hand: an HBM load latency, then K / 8 steps, each the
    slowest of MMA issue (the SM's mma.sync rate split between its blocks), L2 reads (6 KiB of
    operands at the near rate split between the streaming blocks, at most 4 stages in flight per
    hit latency) and shared memory (6 KiB written, 12 KiB read by the 2 x 2 warps)."""
    mma = 2 * 128 * 64 * 8 / (TF32_PEAK * MMA_SYNC / SMS / blocks_per_sm)
    step_B = (128 + 64) * 8 * 4
    l2 = step_B / min(L2_NEAR_Bps / streaming, 4 * step_B / L2_HIT_S)
    smem = ((128 + 64) + (2 * 128 + 2 * 64)) * 8 * 4 * blocks_per_sm / SMEM_Bps
    return HBM_LAT_S + k // 8 * max(mma, l2, smem)


API_S, DOORBELL_S, FLOOR_S = 2e-6, 1e-6, 2e-6
FLAG_S, BARRIER_S, TASK_LAT_S, SCHED_S, SUB_S = 200e-9, 2e-6, 500e-9, 50e-9, 20e-9


def _profile(**device_ns: float) -> CalibrationProfile:
    prof = make_profile()
    if not device_ns:
        return prof
    update = {k: Measured(value=v, source="test") for k, v in device_ns.items()}
    return prof.model_copy(update={"device": prof.device.model_copy(update=update)})


def _setup(
    n_gpus: int,
    tokens: int,
    experts: int,
    hidden: int,
    intermediate: int,
    top_k: int,
    counts: Any = None,
    *,
    task_batch: int = 1,
    profile: CalibrationProfile | None = None,
    link_GBps: float = 450.0,
) -> tuple[Node, MoELayerWorkload, LayerGeometry, RoutedBatch]:
    topo = make_star_topology(n_gpus, link_GBps=link_GBps)
    prof = profile or make_profile()
    wl = MoELayerWorkload(
        tokens_per_gpu=tokens,
        hidden=hidden,
        intermediate=intermediate,
        experts=experts,
        top_k=top_k,
        strategy=FlashMoEStrategy(task_batch=task_batch),
    )
    geo = LayerGeometry(
        gpus=[g.id for g in topo.gpus()],
        tokens_per_gpu=tokens,
        hidden=hidden,
        intermediate=intermediate,
        experts=experts,
        top_k=top_k,
        capacity_factor=1.0,
        dtype=Dtype.tf32,
    )
    if counts is None:
        counts = np.full((n_gpus, experts), tokens * top_k // experts)
    batch = RoutedBatch(counts=np.asarray(counts), dropped=0, maxvio_batch=0.0)
    return Node(topo, prof, Simulation()), wl, geo, batch


def _des(*args: Any, **kwargs: Any) -> Outcome:
    flow_bypass = kwargs.pop("flow_bypass", True)
    node, wl, geo, batch = _setup(*args, **kwargs)
    return flashmoe.des(node, wl, geo, batch, flow_bypass=flow_bypass)


def _analytic(*args: Any, **kwargs: Any) -> Outcome:
    node, wl, geo, batch = _setup(*args, **kwargs)
    return flashmoe.analytic(node.topology, node.profile, wl, geo, batch)


# -- tile costs ------------------------------------------------------------------------------------


def test_tile_gemm_pays_padding_and_shares_the_sm() -> None:
    rates = gpu_rates(make_h100_spec(), make_profile())
    args = (rates, InstructionPath.mma_sync, Dtype.tf32, 128, 64, 2048)
    grid = MainloopShare(ctas_per_sm=2, streaming_ctas=263)
    full = tile_gemm_time_s(*args, 128, grid)
    assert tile_gemm_time_s(*args, 1, grid) == full  # a partial row tile runs full MMAs
    assert full == pytest.approx(_tile_s(2048), rel=1e-12)
    # alone on its SM and in the grid: the whole MMA issue rate and the in-flight L2 cap
    alone = tile_gemm_time_s(*args, 128, MainloopShare(ctas_per_sm=1, streaming_ctas=1))
    assert alone == pytest.approx(_tile_s(2048, 1, 1), rel=1e-12)
    assert alone < full
    with pytest.raises(ValueError):
        tile_gemm_time_s(*args, 129, grid)


def test_combine_tile_bytes_and_contention_share() -> None:
    rates = gpu_rates(make_h100_spec(), make_profile())
    atomic = combine_tile_bytes(128, 64, 4, accumulate=True)
    assert atomic == 128 * 64 * 4 * 3 + 128 * 8
    assert combine_tile_bytes(128, 64, 4, accumulate=False) == 128 * 64 * 4 * 2 + 128 * 8
    assert combine_tile_time_s(rates, 128, 64, 4, 10) == pytest.approx(atomic * 10 / HBM_Bps)
    assert block_stream_Bps(rates, 264) == pytest.approx(HBM_Bps / 264)


# -- grid ------------------------------------------------------------------------------------------


def test_blocks_per_sm_emerge_from_occupancy() -> None:
    rates = gpu_rates(make_h100_spec(), make_profile())

    def grid(regs: int, cap: int) -> PersistentGrid:
        return PersistentGrid.plan(
            rates,
            KernelResources(
                threads_per_block=128,
                registers_per_thread=regs,
                shared_mem_per_block_bytes=48 * 1024,
            ),
            max_blocks_per_sm=cap,
        )

    paper = grid(255, 8)  # 255 registers x 128 threads: the register file allows 2 per SM
    assert paper.occupancy.limiting_factor == "registers"
    assert (paper.blocks_per_sm, paper.blocks, paper.processors) == (2, 264, 263)
    assert grid(255, 1).blocks == 132  # the strategy's cap wins when lower
    assert grid(64, 8).blocks_per_sm == 4  # fewer registers: 48 KiB of shared memory limits
    assert flashmoe.superblock_size(32) == 8
    assert flashmoe.superblock_size(128) == 2
    assert flashmoe.superblock_size(1) == 64


# -- the engine alone ------------------------------------------------------------------------------


def _kernel(sched_ns: float = 50.0) -> tuple[Node, PersistentKernel]:
    node = Node(make_star_topology(1), _profile(scheduler_ns_per_task=sched_ns), Simulation())
    gpu = node.gpus["gpu0"]
    grid = PersistentGrid.plan(
        gpu.rates, FlashMoEStrategy().kernel_resources(), max_blocks_per_sm=2
    )
    times = DeviceTimes.from_profile(node.profile)
    return node, PersistentKernel(gpu, grid, times, FlowGate(node.network))


def _run_tasks(sched_ns: float, n_per_processor: int, task_s: float) -> tuple[float, int]:
    node, kernel = _kernel(sched_ns)
    p = kernel.processors
    n = n_per_processor * p

    def body(k: PersistentKernel) -> Generator[simpy.Event, Any, None]:
        k.add_processors(p)
        k.submit(TaskGroup("work", n, task_s))
        yield from ()

    kernel.expect(n)
    node.gpus["gpu0"].stream(0).submit("k", lambda: kernel.run(body))
    node.sim.run()
    assert kernel.busy_block_s["work"] == pytest.approx(n * task_s, rel=1e-9)
    assert kernel.end_s is not None
    return kernel.end_s, p


def test_engine_waves_then_scheduler_bound() -> None:
    d = 50e-6
    end, p = _run_tasks(50.0, 2, d)  # P x scheduler time < a task: processors set the pace
    assert end == pytest.approx(FLOOR_S + (p + 1) * SCHED_S + 2 * TASK_LAT_S + 2 * d, rel=1e-9)
    slow = 1e-6
    end, p = _run_tasks(slow * 1e9, 2, d)  # P x scheduler time > a task: the scheduler does
    assert end == pytest.approx(FLOOR_S + 2 * p * slow + TASK_LAT_S + d, rel=1e-9)


def test_engine_subscriber_dag_and_early_arrivals() -> None:
    node, kernel = _kernel()
    env = node.sim.env
    d0, d1 = 3e-6, 5e-6
    done: list[float] = []

    def successor(group: TaskGroup, first: int, count: int) -> None:
        done.append(float(env.now))
        if len(done) == 3:  # all three first-stage tasks ended: one follow-up task
            kernel.submit(TaskGroup("second", 1, d1))

    def body(k: PersistentKernel) -> Generator[simpy.Event, Any, None]:
        k.add_processors(k.processors)
        yield from ()

    kernel.expect(3 + 1 + 1)  # three tasks, their successor, one signal
    # the packet arrives before the kernel starts: its subscriber decodes it at the start
    kernel.deliver(3, TaskGroup("first", 3, d0, successor), signal=True)
    node.gpus["gpu0"].stream(0).submit("k", lambda: kernel.run(body), ready_delay_s=1e-6)
    node.sim.run()
    # decoded by 1 us + 3 x 20 ns, but the processors join after the kernel floor
    assert done[-1] == pytest.approx(1e-6 + FLOOR_S + 3 * SCHED_S + TASK_LAT_S + d0, rel=1e-9)
    expected_end = done[-1] + SCHED_S + TASK_LAT_S + d1
    assert kernel.end_s == pytest.approx(expected_end, rel=1e-9)
    assert kernel.tasks_run == {"first": 3, "second": 1}


# -- closed forms ----------------------------------------------------------------------------------


def _one_gpu_closed_form(tokens: int, hidden: int, intermediate: int) -> float:
    """One GPU, one expert, top-1, all tokens to it, every phase in one wave (hand-derived)."""
    blocks = 2 * SMS
    c = HBM_Bps / blocks  # one block's streaming cap
    rt = tokens // 128
    tn, tnx = intermediate // 64, hidden // 64
    gate = _tile_s(hidden)  # rt gate tiles <= blocks: one wave
    copy = 2 * tokens * hidden * 4 / (64 * c)  # SBZ = 64 blocks copy through HBM (read + write)
    gemm0 = _tile_s(hidden)
    gemm1 = _tile_s(intermediate)
    write = 128 * 64 * 4 / c
    combine = (128 * 64 * 4 * 2 + 128 * 8) / c  # top-1: plain store
    t = API_S + DOORBELL_S + FLOOR_S + gate + BARRIER_S + copy + FLAG_S
    t += rt * tn * SUB_S  # the subscriber decodes the packet
    t += rt * tn * SCHED_S + TASK_LAT_S + gemm0  # last GEMM0 (last row tile)
    t += tnx * SCHED_S + TASK_LAT_S + gemm1 + write  # that row tile's last GEMM1
    t += FLAG_S + SUB_S + SCHED_S + TASK_LAT_S + combine  # its combine
    return t


@pytest.mark.parametrize(("tokens", "dim"), [(512, 256), (1024, 512)])
def test_one_gpu_one_expert_matches_closed_form(tokens: int, dim: int) -> None:
    args = (1, tokens, 1, dim, dim, 1, [[tokens]])
    expected = _one_gpu_closed_form(tokens, dim, dim)
    des = _des(*args)
    ana = _analytic(*args)
    assert des.makespan_s == pytest.approx(expected, rel=1e-6)
    assert ana.makespan_s == pytest.approx(des.makespan_s, rel=1e-6)
    rt, tn = tokens // 128, dim // 64
    assert des.metrics["tasks"] == ana.metrics["tasks"] == 3 * rt * tn
    assert des.metrics["kernel_launches"] == 1.0


# -- payload and tasks -----------------------------------------------------------------------------


def test_payload_is_routed_tokens_only() -> None:
    counts = np.array([[100, 0, 37, 300], [5, 250, 0, 128]])
    hidden = 256
    out = _des(2, 512, 4, hidden, 256, 2, counts)
    remote = counts[0, 2:].sum() + counts[1, :2].sum()  # experts 0-1 on gpu0, 2-3 on gpu1
    assert out.metrics["payload_efficiency"] == 1.0
    assert out.metrics["network_payload_B"] == remote * hidden * 4 * 2
    assert out.metrics["kernel_launches"] == 1.0  # one persistent kernel per GPU
    # every byte crosses the sender's uplink once: dispatch rows out, GEMM1 results back
    up0 = out.link_bytes["gpu0->sw"]
    assert up0 == (counts[0, 2:].sum() + counts[1, :2].sum()) * hidden * 4


def _two_node_topology(link_GBps: float = 450.0, ib_GBps: float = 50.0) -> Topology:
    """2 nodes x 2 GPUs: per node a CPU and an NVSwitch-like switch; a NIC per GPU on PCIe; one
    InfiniBand switch (the shape of topologies/h100_2node_ib.json)."""
    model = make_h100_spec()
    mem = MemoryTierSpec(
        name="test-ddr",
        kind=MemoryKind.ddr,
        capacity_GB=512,
        bw_GBps=300,
        latency_ns=100,
        source=FIXTURE,
    )
    cpu_spec = HostCPUSpec(name="test-cpu", cores=32, clock_GHz=3.0, isa="x86_64", source=FIXTURE)
    devices: list[Device] = [
        SwitchDevice(id="ib", switch_type=SwitchType.infiniband, latency_ns=130.0, source=FIXTURE)
    ]
    links: list[LinkSpec] = []

    def link(kind: LinkKind, a: str, b: str, bw: float, lat: float) -> None:
        links.append(
            LinkSpec(kind=kind, a=a, b=b, bw_a_to_b_GBps=bw, latency_ns=lat, source=FIXTURE)
        )

    for n in range(2):
        cpu, sw = f"n{n}.cpu", f"n{n}.sw"
        devices.append(CPUDevice(id=cpu, model=cpu_spec, memory=mem, node=n))
        devices.append(
            SwitchDevice(
                id=sw, switch_type=SwitchType.nvswitch, latency_ns=100.0, source=FIXTURE, node=n
            )
        )
        for i in range(2):
            gpu, nic = f"n{n}.gpu{i}", f"n{n}.nic{i}"
            devices.append(GPUDevice(id=gpu, model=model, host=cpu, node=n))
            devices.append(NICDevice(id=nic, name="test-nic", source=FIXTURE, node=n))
            link(LinkKind.nvlink, gpu, sw, link_GBps, 500.0)
            link(LinkKind.pcie, gpu, cpu, 63.0, 1000.0)
            link(LinkKind.pcie, gpu, nic, 63.0, 500.0)
            link(LinkKind.infiniband, nic, "ib", ib_GBps, 600.0)
    return Topology(name="two_node", default_profile="test-profile", devices=devices, links=links)


def _two_node_run(
    counts: Any, hidden: int = 256, intermediate: int = 256
) -> tuple[Outcome, list[tuple[tuple[str, ...], float, float]], Outcome]:
    """One forward on the two-node topology, recording every gated transfer's route (resource
    names), bytes and cap; and the analytic form of the same forward."""
    topo = _two_node_topology()
    counts = np.asarray(counts)
    experts = counts.shape[1]
    wl = MoELayerWorkload(
        tokens_per_gpu=512,
        hidden=hidden,
        intermediate=intermediate,
        experts=experts,
        top_k=2,
        strategy=FlashMoEStrategy(),
    )
    geo = LayerGeometry(
        gpus=[g.id for g in topo.gpus()],
        tokens_per_gpu=512,
        hidden=hidden,
        intermediate=intermediate,
        experts=experts,
        top_k=2,
        capacity_factor=1.0,
        dtype=Dtype.tf32,
    )
    batch = RoutedBatch(counts=counts, dropped=0, maxvio_batch=0.0)
    node = Node(topo, make_profile(), Simulation())
    sent: list[tuple[tuple[str, ...], float, float]] = []
    resources = node.fabric.resources
    original = FlowGate.send

    def recording(
        self: FlowGate, route: tuple[int, ...], size_B: float, latency_s: float, cap: float, *a: Any
    ) -> None:
        names = tuple(resources[r].name if r < len(resources) else "hbm" for r in route)
        sent.append((names, size_B, cap))
        original(self, route, size_B, latency_s, cap, *a)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FlowGate, "send", recording)
        out = flashmoe.des(node, wl, geo, batch)
    return out, sent, flashmoe.analytic(topo, node.profile, wl, geo, batch)


def test_rdma_peers_put_once_per_packet_and_row_tile() -> None:
    # 4 GPUs (n0.gpu0, n0.gpu1, n1.gpu0, n1.gpu1), one expert each; rows of 4 x 256 B
    counts = np.array([[100, 0, 37, 300], [5, 250, 0, 128], [64, 129, 7, 0], [0, 1, 200, 256]])
    hidden = intermediate = 256
    out, sent, ana = _two_node_run(counts, hidden, intermediate)
    tile_n = 64
    node_of = [0, 0, 1, 1]
    tnx = hidden // tile_n
    inter = [(names, b) for names, b, _cap in sent if any("->ib" in x for x in names)]
    packets = rows_back = 0
    routed = 0
    for g in range(4):
        for e in range(4):
            n = int(counts[g, e])
            if node_of[g] != node_of[e] and n > 0:
                packets += 1
                rows_back += flashmoe.row_tiles(n, 128)
                routed += n
    assert len(inter) == packets + rows_back
    row_B = hidden * 4
    assert sum(b for _names, b in inter) == 2 * routed * row_B
    ib_up = sum(b for name, b in out.link_bytes.items() if name.endswith("->ib"))
    assert ib_up == 2 * routed * row_B
    assert out.metrics["payload_efficiency"] == 1.0
    # intra-node remote peers keep the P2P path: one store per packet, one per GEMM1 tile
    p2p = [(names, b) for names, b, _cap in sent if any(x.endswith(".sw") for x in names)]
    p2p_expected = 0
    p2p_B = 0.0
    for g in range(4):
        for e in range(4):
            n = int(counts[g, e])
            if g != e and node_of[g] == node_of[e] and n > 0:
                p2p_expected += 1 + flashmoe.row_tiles(n, 128) * tnx
                p2p_B += 2 * n * row_B
    assert len(p2p) == p2p_expected
    assert sum(b for _names, b in p2p) == p2p_B
    # every GPU terminates and does every task
    expected = sum(
        flashmoe.row_tiles(int(n), 128) * (intermediate // tile_n + 2 * tnx) for n in counts.flat
    )
    assert out.metrics["tasks"] == ana.metrics["tasks"] == expected
    # the analytic form moves the same bytes over every link
    assert ana.link_bytes == pytest.approx(out.link_bytes, rel=1e-12)
    assert ana.metrics["payload_efficiency"] == 1.0


def test_rdma_puts_are_whole_packets_and_row_tiles_uncapped() -> None:
    # one large packet to the other node: staged in the sender's HBM, then one uncapped put (the
    # NIC moves it); 32 row tiles come back as one uncapped put each
    counts = np.array([[0, 0, 4096, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    _out, sent, _ = _two_node_run(counts)
    puts = [(b, cap) for names, b, cap in sent if any("->ib" in x for x in names)]
    assert puts[0][0] == 4096 * 256 * 4  # one put of the whole packet
    assert puts[1:] == [(128 * 256 * 4, math.inf)] * (4096 // 128)
    assert all(cap == math.inf for _b, cap in puts)
    staged = [b for names, b, _cap in sent if names == ("hbm",)]
    assert 2 * 4096 * 256 * 4 in staged  # the staging copy: read + write


def test_more_experts_never_fewer_tasks() -> None:
    tokens, top_k = 1024, 2
    tasks = []
    for experts in (2, 4, 8, 16, 32):
        out = _des(2, tokens, experts, 256, 256, top_k)
        tasks.append(out.metrics["tasks"])
    assert all(b >= a for a, b in itertools.pairwise(tasks))
    assert tasks[-1] > tasks[0]


def test_zero_token_packets_send_only_signals() -> None:
    counts = np.array([[256, 0, 0, 0], [0, 0, 0, 0]])
    out = _des(2, 128, 4, 256, 256, 2, counts)
    assert out.metrics["tasks"] == 2 * (4 + 4 + 4)  # 2 row tiles, TN = TNx = 4
    assert out.metrics["network_payload_B"] == 0.0
    assert all(v["end_s"] > v["start_s"] for v in out.per_gpu.values())


# -- stragglers and the scheduler ------------------------------------------------------------------


def test_imbalance_makes_a_straggler() -> None:
    n, tokens, experts = 2, 4096, 8
    uniform = _des(n, tokens, experts, 512, 512, 2)
    skew = np.zeros((n, experts), dtype=int)
    skew[:, :4] = tokens * 2 // 4  # every token goes to gpu0's experts
    skewed = _des(n, tokens, experts, 512, 512, 2, skew)
    assert skewed.makespan_s > 1.3 * uniform.makespan_s
    assert skewed.per_gpu["gpu0"]["gemm_s"] > 1.5 * skewed.per_gpu["gpu1"]["gemm_s"]


def test_scheduler_serialisation_emerges() -> None:
    args = (1, 2048, 1, 256, 256, 1, [[2048]])  # 16 row tiles x (4 + 4 + 4) tasks
    tasks = 16 * 12
    lat = {}
    for sched_ns in (5_000.0, 10_000.0):
        lat[sched_ns] = _des(*args, profile=_profile(scheduler_ns_per_task=sched_ns)).makespan_s
    # tiles take ~1-2 us: the scheduler, not the processors, sets the pace
    growth = (lat[10_000.0] - lat[5_000.0]) / (5_000e-9 * tasks)
    assert growth == pytest.approx(1.0, abs=0.05)
    fast = _des(*args).makespan_s
    assert lat[5_000.0] > 5 * fast


# -- engine properties -----------------------------------------------------------------------------


def test_batched_tasks_agree_with_per_task() -> None:
    args = (2, 8192, 16, 1024, 1024, 2)
    fine = _des(*args)
    coarse = _des(*args, task_batch=8)
    batches = sum(v["task_batches"] for v in coarse.per_gpu.values())
    assert batches < 0.8 * coarse.metrics["tasks"]  # batching did happen
    assert coarse.metrics["tasks"] == fine.metrics["tasks"]
    # the documented tolerance of task_batch (gpusim.execution.persistent): 5 %
    assert coarse.makespan_s == pytest.approx(fine.makespan_s, rel=0.05)
    assert coarse.metrics["processor_busy_s"] == pytest.approx(
        fine.metrics["processor_busy_s"], rel=0.05
    )


def test_closed_form_transfers_equal_the_fluid_network() -> None:
    args = (4, 2048, 16, 512, 512, 2)  # NVLink oversubscribed by GEMM1 writes at times
    gated = _des(*args)
    fluid = _des(*args, flow_bypass=False)
    assert 0.0 < gated.metrics["fluid_transfer_fraction"] < 1.0
    assert fluid.metrics["fluid_transfer_fraction"] == 1.0
    assert gated.makespan_s == pytest.approx(fluid.makespan_s, rel=1e-9)
    for g in gated.per_gpu:
        assert gated.per_gpu[g]["end_s"] == pytest.approx(fluid.per_gpu[g]["end_s"], rel=1e-9)


def test_holding_sms_is_not_using_them() -> None:
    node, wl, geo, batch = _setup(2, 2048, 8, 512, 512, 2)
    out = flashmoe.des(node, wl, geo, batch)
    assert 0.0 < out.metrics["sm_utilisation"] < out.metrics["sm_held_fraction"] <= 1.0
    for gid, gpu in node.gpus.items():
        held = out.per_gpu[gid]["kernel_s"] * SMS
        assert gpu.busy_sm_s == pytest.approx(held, rel=1e-9)
        assert gpu.kernels_run == 1
    breakdown = out.per_gpu["gpu0"]
    parts = ("gate_s", "dispatch_work_s", "gemm_s", "combine_s", "idle_s")
    assert sum(breakdown[p] for p in parts) == pytest.approx(breakdown["kernel_s"], rel=1e-9)


def test_deterministic() -> None:
    counts = np.array([[300, 20, 0, 200, 5, 500, 90, 1], [7, 7, 700, 0, 64, 128, 129, 3]])
    a = _des(2, 1024, 8, 256, 512, 2, counts)
    b = _des(2, 1024, 8, 256, 512, 2, counts)
    assert a == b
    assert math.isfinite(a.makespan_s)


def test_rejects_other_strategies_and_bad_counts() -> None:
    node, wl, geo, batch = _setup(2, 512, 4, 256, 256, 2)
    with pytest.raises(SimulationError, match="shape"):
        flashmoe.des(node, wl, geo, RoutedBatch(np.zeros((2, 3)), 0, 0.0))
    with pytest.raises(SimulationError, match="not flashmoe"):
        flashmoe.des(node, wl.model_copy(update={"strategy": MegatronStrategy()}), geo, batch)


def _deliver_by_event(
    self: PersistentKernel, delay_s: float, n_tasks: int, group: TaskGroup
) -> None:
    """The slow path of ``PersistentKernel.deliver_later``: a timeout whose callback delivers."""
    ev = self.env.timeout(delay_s)
    ev.callbacks.append(lambda _ev: self.deliver(n_tasks, group))


def _random_layer(rng: np.random.Generator, uniform: bool) -> tuple[Any, ...]:
    """``_setup``'s positional arguments for a random small layer (2-4 GPUs, 4-16 experts, some
    (GPU, expert) pairs empty); ``uniform``: every GPU alike, so many events share an instant."""
    n_gpus = int(rng.choice([2, 4]))
    experts = int(rng.choice([4, 8, 16]))
    tokens = int(rng.choice([256, 1024, 2048]))
    counts = rng.integers(0, 2 * tokens * 2 // experts + 1, size=(n_gpus, experts))
    counts[rng.random(counts.shape) < 0.2] = 0
    if uniform:
        counts[:] = tokens * 2 // experts
    return (n_gpus, tokens, experts, int(rng.choice([256, 512])), 512, 2, counts)


def test_held_deliveries_equal_delivery_events() -> None:
    """Results held in the subscriber's virtual clock (``deliver_later``) give exactly the
    forward that one event per result gives, on random instances, with fewer events."""
    rng = np.random.default_rng(17)
    released = 0
    original = PersistentKernel._release_held

    def counting(self: PersistentKernel) -> None:
        nonlocal released
        released += len(self._held)
        original(self)

    for case in range(24):
        args = _random_layer(rng, uniform=case % 3 == 0)
        kwargs: dict[str, Any] = {
            "task_batch": int(rng.choice([1, 8])),
            "link_GBps": float(rng.choice([50.0, 450.0])),
            "profile": _profile(subscriber_ns_per_task=float(rng.choice([5.0, 20.0, 400.0]))),
        }
        events: list[int] = []
        outcomes: list[Outcome] = []
        for slow in (False, True):
            node, wl, geo, batch = _setup(*args, **kwargs)
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(PersistentKernel, "_release_held", counting)
                if slow:
                    mp.setattr(PersistentKernel, "deliver_later", _deliver_by_event)
                outcomes.append(flashmoe.des(node, wl, geo, batch))
            events.append(node.sim.events_scheduled())
        assert outcomes[0] == outcomes[1], case
        assert events[0] <= events[1], case
    assert released > 0  # idle processors made held deliveries events


def _simultaneous_results(slow: bool) -> tuple[list[tuple[str, int, float]], int]:
    """With no scheduler time, every first-wave task ends at one instant; each holds a result
    due at once (``deliver_later``, or its event with ``slow``) and delivers a packet now.
    Returns the (kind, index, end) of every task and the events scheduled."""
    prof = _profile(scheduler_ns_per_task=0.0, subscriber_ns_per_task=20.0)
    node = Node(make_star_topology(1), prof, Simulation())
    gpu = node.gpus["gpu0"]
    grid = PersistentGrid.plan(
        gpu.rates, FlashMoEStrategy().kernel_resources(), max_blocks_per_sm=2
    )
    kernel = PersistentKernel(gpu, grid, DeviceTimes.from_profile(prof), FlowGate(node.network))
    env, p = node.sim.env, kernel.processors
    log: list[tuple[str, int, float]] = []

    def ended(group: TaskGroup, first: int, _count: int) -> None:
        log.append((group.kind, group.data if group.data is not None else first, env.now))

    def first_done(group: TaskGroup, first: int, count: int) -> None:
        ended(group, first, count)
        held = TaskGroup("held", 1, 1e-6, ended, data=first)
        if slow:
            _deliver_by_event(kernel, 0.0, 1, held)
        else:
            kernel.deliver_later(0.0, 1, held)
        kernel.deliver(1, TaskGroup("now", 1, 1e-6, ended, data=first))

    def body(k: PersistentKernel) -> Generator[simpy.Event, Any, None]:
        k.add_processors(p)
        k.submit(TaskGroup("first", p, 2e-6, first_done))
        yield from ()

    kernel.expect(3 * p)
    gpu.stream(0).submit("k", lambda: kernel.run(body))
    node.sim.run()
    assert len({t for kind, _i, t in log if kind == "first"}) == 1  # one instant
    return log, node.sim.events_scheduled()


def test_held_deliveries_keep_their_place_among_simultaneous_events() -> None:
    """The held results reach the subscriber after every packet of their instant (their events
    would have run last), as events would."""
    held, fewer = _simultaneous_results(slow=False)
    with_events, scheduled = _simultaneous_results(slow=True)
    assert held == with_events
    assert fewer < scheduled


def test_the_freed_processors_assignment_equals_the_general_one() -> None:
    """``_assign_freed`` (one by one, the freed processor the only idle one) gives exactly the
    forward that the general ``_assign`` gives, events included, on random instances."""
    rng = np.random.default_rng(23)
    fast = 0
    original = PersistentKernel._assign_freed

    def counting(self: PersistentKernel, b: Any, now: float) -> None:
        nonlocal fast
        fast += 1
        original(self, b, now)

    def general(self: PersistentKernel, _b: Any, _now: float) -> None:
        self._assign()

    for case in range(16):
        args = _random_layer(rng, uniform=case % 3 == 0)
        kwargs: dict[str, Any] = {
            "link_GBps": float(rng.choice([50.0, 450.0])),
            "profile": _profile(
                scheduler_ns_per_task=float(rng.choice([0.0, 40.0, 400.0])),
                subscriber_ns_per_task=float(rng.choice([5.0, 400.0])),
            ),
        }
        events: list[int] = []
        outcomes: list[Outcome] = []
        for path in (counting, general):
            node, wl, geo, batch = _setup(*args, **kwargs)
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(PersistentKernel, "_assign_freed", path)
                outcomes.append(flashmoe.des(node, wl, geo, batch))
            events.append(node.sim.events_scheduled())
        assert outcomes[0] == outcomes[1], case
        assert events[0] == events[1], case
    assert fast > 0
