"""The program step kinds wired to the host runtime: op kinds and runtime calls of a kernel,
host-only steps, the three synchronisations, ring collectives as exchanges, launch records;
each against its closed form, in both fidelities."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from conftest import make_profile, make_star_topology

from gpusim.engine.sim import Simulation
from gpusim.errors import SimulationError
from gpusim.execution.host_costs import HostCosts, OpKind, RuntimeCall
from gpusim.execution.program import (
    Collective,
    Exchange,
    ExchangeStep,
    GraphStep,
    HostStep,
    KernelStep,
    Program,
    RankResult,
    Step,
    SyncKind,
    SyncStep,
    host_cost_s,
    validate_programs,
)
from gpusim.execution.program_analytic import ProgramAnalytic, run_analytic
from gpusim.execution.program_des import ProgramDES
from gpusim.hardware.node import Node
from gpusim.hardware.platform import Platform
from gpusim.kernels.collectives import NcclCosts
from gpusim.workloads.moe.hostdriven import elementwise

G = 4
GPUS = [f"gpu{i}" for i in range(G)]
PHASES = ("compute", "talk")
COSTS = HostCosts.from_profile(make_profile())
NCCL_CALL_S = NcclCosts.from_profile(make_profile()).host_call_s
D = COSTS.launch.doorbell_s
R = COSTS.sync_return_s


def _des(programs: Sequence[Program]) -> tuple[list[RankResult], ProgramDES]:
    node = Node(make_star_topology(G), make_profile(), Simulation())
    des = ProgramDES(node, GPUS, PHASES)
    return des.run(programs), des


def _analytic(programs: Sequence[Program]) -> list[RankResult]:
    return run_analytic(Platform.of(make_star_topology(G), make_profile()), GPUS, programs, PHASES)


def _kernel(
    size_B: int = 1 << 24,
    *,
    stream: int = 0,
    new_op: bool = True,
    op_kind: OpKind = OpKind.elementwise,
    records_graph: bool = False,
    call: RuntimeCall = RuntimeCall.launch_kernel,
) -> KernelStep:
    rates = Platform.of(make_star_topology(G), make_profile()).gpu_rates("gpu0")
    cost = elementwise("scale", size_B, size_B, rates)
    return KernelStep(
        cost,
        "compute",
        stream=stream,
        new_op=new_op,
        op_kind=op_kind,
        records_graph=records_graph,
        call=call,
    )


def _both(programs: Sequence[Sequence[Step]]) -> tuple[float, float]:
    """End of rank 0 in DES and analytic."""
    des, _ = _des(programs)
    ana = _analytic(programs)
    return des[0].end_s, ana[0].end_s


def test_defaults_cost_what_they_cost_before() -> None:
    launch = COSTS.launch
    assert host_cost_s(_kernel(), COSTS, NCCL_CALL_S) == launch.framework_op_s + launch.api_s
    assert host_cost_s(_kernel(new_op=False), COSTS, NCCL_CALL_S) == launch.api_s
    assert host_cost_s(SyncStep(8, "talk"), COSTS, NCCL_CALL_S) == launch.api_s
    ex = Exchange("x", np.zeros((G, G)), "nccl", 16)
    assert host_cost_s(ExchangeStep(ex, "talk"), COSTS, NCCL_CALL_S) == NCCL_CALL_S


def test_op_kind_autograd_and_cublas_call_are_charged() -> None:
    step = _kernel(op_kind=OpKind.indexing, records_graph=True, call=RuntimeCall.cublas)
    expected = COSTS.framework_op_s(OpKind.indexing, True) + COSTS.runtime_call_s(
        RuntimeCall.cublas
    )
    assert host_cost_s(step, COSTS, NCCL_CALL_S) == pytest.approx(expected)
    # a further kernel of the same op pays only its runtime call
    cont = _kernel(new_op=False, records_graph=True, call=RuntimeCall.cublas)
    assert host_cost_s(cont, COSTS, NCCL_CALL_S) == COSTS.runtime_call_s(RuntimeCall.cublas)
    ex = Exchange("x", np.zeros((G, G)), "nccl", 16)
    c10d = ExchangeStep(ex, "talk", call=RuntimeCall.collective)
    assert host_cost_s(c10d, COSTS, NCCL_CALL_S) == pytest.approx(
        COSTS.framework_op_s(OpKind.elementwise) + COSTS.runtime_call_s(RuntimeCall.collective)
    )


def test_host_step_delays_the_next_launch_by_its_cost() -> None:
    k = _kernel()
    c = host_cost_s(k, COSTS, NCCL_CALL_S)
    d = k.cost.time_s
    python: list[list[Step]] = [[HostStep("compute", "python", count=5), k] for _ in GPUS]
    expected = 5 * COSTS.python_step_s + c + D + d
    for end in _both(python):
        assert end == pytest.approx(expected, rel=1e-12)
    view: list[list[Step]] = [
        [HostStep("compute", OpKind.view, count=3, records_graph=True), k] for _ in GPUS
    ]
    expected = 3 * COSTS.framework_op_s(OpKind.view, True) + c + D + d
    for end in _both(view):
        assert end == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kind", ["stream", "device"])
def test_sync_next_kernel_starts_after_drain_plus_return_latency(kind: SyncKind) -> None:
    k = _kernel()
    c, d = host_cost_s(k, COSTS, NCCL_CALL_S), k.cost.time_s
    programs: list[list[Step]] = [[k, SyncStep(0, "compute", kind=kind), k] for _ in GPUS]
    # kernel 1 ends at c + D + d; the host returns R later, pays c, the kernel starts D later
    expected = (c + D + d) + R + c + D + d
    des, ana = _both(programs)
    assert des == pytest.approx(expected, rel=1e-12)
    assert ana == pytest.approx(expected, rel=1e-12)


def test_stream_sync_waits_for_its_stream_only_device_sync_for_all() -> None:
    long_k = _kernel(1 << 26, stream=1)
    c = host_cost_s(long_k, COSTS, NCCL_CALL_S)
    long_end = c + D + long_k.cost.time_s
    cases: tuple[tuple[SyncKind, float], ...] = (("stream", c), ("device", long_end))
    for kind, awaited in cases:  # stream 0 holds nothing
        sync = SyncStep(0, "compute", kind=kind, stream=0)
        programs: list[list[Step]] = [[long_k, sync, HostStep("compute")] for _ in GPUS]
        des, obj = _des(programs)
        ana = _analytic(programs)
        for res in (des[0], ana[0]):
            assert res.sync_wait_s == pytest.approx(awaited + R - c, rel=1e-9)
            assert res.host_s == pytest.approx(c + COSTS.python_step_s, rel=1e-12)
        assert des[0].end_s == pytest.approx(ana[0].end_s, rel=1e-12)
        assert obj.log.records  # launches recorded


def test_to_host_sync_keeps_its_meaning() -> None:
    k = _kernel()
    programs: list[list[Step]] = [[k, SyncStep(64, "talk"), k] for _ in GPUS]
    des, ana = _both(programs)
    assert des == pytest.approx(ana, rel=1e-12)
    c, d = host_cost_s(k, COSTS, NCCL_CALL_S), k.cost.time_s
    assert des > 2 * (c + D + d) + R


def test_stream_sync_with_bytes_is_an_error() -> None:
    programs = [[SyncStep(8, "talk", kind="stream")] for _ in GPUS]
    with pytest.raises(SimulationError, match=r"rank 'gpu0' step 0: a 'stream' sync copies"):
        validate_programs(GPUS, programs, PHASES)


@pytest.mark.parametrize("collective", ["all_gather", "reduce_scatter", "all_reduce"])
def test_ring_exchange_analytic_equals_des(collective: Collective) -> None:
    shard = float(1 << 22)
    ex = Exchange.ring("x", collective, G, shard, 16)
    programs: list[list[Step]] = [[_kernel(), ExchangeStep(ex, "talk")] for _ in GPUS]
    des, obj = _des(programs)
    ana = _analytic(programs)
    for a, b in zip(des, ana, strict=True):
        assert a.end_s == pytest.approx(b.end_s, rel=1e-9)
        assert a.phase_s["talk"] == pytest.approx(b.phase_s["talk"], rel=1e-9)
    coll = obj._collectives[id(ex)]
    received = (G - 1) * shard * (2 if collective == "all_reduce" else 1)
    for gpu in GPUS:
        assert coll.bytes_received_B[gpu] == pytest.approx(received)


def test_all_gather_moves_n_minus_one_shards_into_each_rank() -> None:
    shard = 3.0 * (1 << 20)
    ex = Exchange.ring("ag", "all_gather", G, shard, 16)
    assert ex.send_B.sum(axis=0) == pytest.approx([(G - 1) * shard] * G)
    _, obj = _des([[ExchangeStep(ex, "talk")] for _ in GPUS])
    coll = obj._collectives[id(ex)]
    assert coll.bytes_received_B == pytest.approx(dict.fromkeys(GPUS, (G - 1) * shard))


def test_ring_exchange_with_unequal_shards_is_an_error() -> None:
    send = np.arange(G * G, dtype=float).reshape(G, G)
    ex = Exchange("bad", send, "nccl", 16, collective="all_gather")
    with pytest.raises(SimulationError, match=r"needs the same shard from every rank"):
        validate_programs(GPUS, [[ExchangeStep(ex, "talk")] for _ in GPUS], PHASES)


def test_launch_records_pair_every_kernel_with_its_runtime_call() -> None:
    k, g = _kernel(), _kernel(call=RuntimeCall.cublas)
    programs: list[list[Step]] = [[k, _kernel(new_op=False), g, SyncStep(8, "talk")] for _ in GPUS]
    _, des = _des(programs)
    recs = des.log.records
    assert len(recs) == 4 * G
    assert len({r.correlation for r in recs}) == len(recs)
    for r in recs:
        assert r.runtime_begin_s <= r.runtime_end_s
        assert r.kernel_start_s >= r.runtime_end_s + D - 1e-15
        assert r.kernel_end_s >= r.kernel_start_s
    by_rank = [r for r in recs if r.gpu == "gpu0"]
    assert by_rank[0].external_id == by_rank[1].external_id != by_rank[2].external_id
    assert by_rank[2].call is RuntimeCall.cublas
    # the op's dispatch precedes its runtime call
    fw = COSTS.framework_op_s(OpKind.elementwise)
    assert by_rank[0].runtime_begin_s == pytest.approx(by_rank[0].op_begin_s + fw)


def _analytic_log(programs: Sequence[Program]) -> ProgramAnalytic:
    ana = ProgramAnalytic(Platform.of(make_star_topology(G), make_profile()), GPUS, PHASES)
    ana.run(programs)
    return ana


def test_analytic_launch_records_equal_the_des_records() -> None:
    k, g = _kernel(), _kernel(call=RuntimeCall.cublas)
    ex = Exchange.ring("ar", "all_reduce", G, 1 << 20, 16)
    programs: list[list[Step]] = [
        [
            k,
            _kernel(new_op=False),
            HostStep("compute"),
            g,
            ExchangeStep(ex, "talk"),
            SyncStep(8, "talk"),
        ]
        for _ in GPUS
    ]
    _, des = _des(programs)
    ana = _analytic_log(programs)
    for gpu in GPUS:
        d = [r for r in des.log.records if r.gpu == gpu]
        a = [r for r in ana.log.records if r.gpu == gpu]
        assert [(r.name, r.call, r.stream) for r in d] == [(r.name, r.call, r.stream) for r in a]
        # framework ops numbered alike: the two kernels of one op share its id, the exchange
        # and the copy are outside any op
        assert [r.external_id > 0 for r in a] == [True, True, True, False, False]
        assert a[0].external_id == a[1].external_id != a[2].external_id
        for rd, ra in zip(d, a, strict=True):
            for field in ("runtime_begin_s", "runtime_end_s", "kernel_start_s", "kernel_end_s"):
                assert getattr(ra, field) == pytest.approx(getattr(rd, field), rel=1e-12, abs=1e-18)


@pytest.mark.parametrize("n", [1, 3, 40])
def test_graph_step_closed_form_in_both_fidelities(n: int) -> None:
    """One cudaGraphLaunch (host: graph_launch_us), the graph starting the doorbell after the
    call returns; node i at max(start + i x per-node cost, end of node i-1)."""
    rates = Platform.of(make_star_topology(G), make_profile()).gpu_rates("gpu0")
    nodes = tuple(elementwise(f"n{i}", 1 << (10 + i % 14), 1 << 10, rates) for i in range(n))
    programs: list[list[Step]] = [[GraphStep(nodes, "compute")] for _ in GPUS]
    assert host_cost_s(programs[0][0], COSTS, NCCL_CALL_S) == COSTS.runtime_call_s(
        RuntimeCall.graph_launch
    )
    start = COSTS.runtime_call_s(RuntimeCall.graph_launch) + D
    end, starts = start, []
    for i, c in enumerate(nodes, start=1):
        s0 = max(start + i * COSTS.launch.graph_per_kernel_s, end)
        starts.append(s0)
        end = s0 + c.time_s
    res, des = _des(programs)
    ana = _analytic_log(programs)
    for log in (des.log, ana.log):
        recs = [r for r in log.records if r.gpu == "gpu0"]
        assert len(recs) == n and len({r.correlation for r in recs}) == 1
        assert all(r.call is RuntimeCall.graph_launch for r in recs)
        assert [r.kernel_start_s for r in recs] == pytest.approx(starts, rel=1e-12)
    assert res[0].end_s == pytest.approx(end, rel=1e-12)
    assert res[0].launches == n
    assert _analytic(programs)[0].end_s == pytest.approx(end, rel=1e-12)


def test_an_empty_graph_is_an_error() -> None:
    with pytest.raises(SimulationError, match="a graph needs at least one node"):
        _analytic([[GraphStep((), "compute")] for _ in GPUS])
