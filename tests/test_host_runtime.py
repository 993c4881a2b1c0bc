"""The host runtime against closed forms: syncs make the host wait for the stream to drain and the
next kernel start after the return latency, a CUDA graph costs one host call, a full launch queue
blocks the launch call, op kinds cost what the profile says, and the Chrome trace pairs every
kernel with exactly one runtime call by correlation id."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest
import simpy
from conftest import make_profile, make_scenario, make_star_topology
from pydantic import ValidationError

from gpusim import simulate
from gpusim.engine.sim import Simulation
from gpusim.execution.host_costs import HostCosts, OpKind, RuntimeCall
from gpusim.execution.runtime import HostRuntime, KernelLaunch, sm_active
from gpusim.export.perfetto import chrome_trace
from gpusim.hardware.node import Node
from gpusim.kernels.cost import KernelCost
from gpusim.spec import ElementwiseOp, Fidelity, KernelChainWorkload, NullOp
from gpusim.spec.loading import load_profile
from gpusim.spec.profile import Measured

# make_profile(): launch_api_us 2, doorbell 1, sync_return 1, graph node 1, framework_op 5;
# host: reduction 6, indexing 7, view 4, autograd 1.5, python 0.5, cublas 3, graph launch 3
L, D, R, P, G = 2e-6, 1e-6, 1e-6, 1e-6, 3e-6
F_ELEM, F_RED, F_VIEW, AUTOGRAD, PY, CUBLAS = 5e-6, 6e-6, 4e-6, 1.5e-6, 0.5e-6, 3e-6
REL = 1e-9
PROFILES = Path(__file__).resolve().parents[1] / "topologies" / "profiles"

Program = Callable[[HostRuntime, Node], Generator[simpy.Event, Any, None]]


def _kernel(compute_s: float, sms: int = 132, name: str = "k") -> KernelCost:
    """A compute-only kernel lasting 1 us (floor) + ``compute_s``."""
    return KernelCost(
        name=name,
        flops=0.0,
        hbm_bytes=0.0,
        blocks=sms,
        sms=sms,
        compute_time_s=compute_s,
        floor_s=1e-6,
        hbm_achievable_Bps=1e12,
        lower_bound_s=0.0,
    )


def _run(program: Program, depth: float = 1024.0, trace: bool = False) -> tuple[Node, HostRuntime]:
    profile = make_profile(launch_queue_depth=depth)
    node = Node(make_star_topology(1), profile, Simulation(trace=trace))
    thread = node.host_thread(node.host_of["gpu0"], "main")
    rt = HostRuntime(thread, HostCosts.from_profile(profile))
    node.sim.env.process(program(rt, node))
    node.sim.run()
    node.finish()
    return node, rt


def test_stream_sync_makes_the_host_wait_and_the_next_kernel_start_after_the_return() -> None:
    k = _kernel(10e-6)  # 11 us

    def program(rt: HostRuntime, node: Node) -> Generator[simpy.Event, Any, None]:
        s = node.gpus["gpu0"].stream(0)
        yield from rt.launch(s, k)
        yield from rt.stream_synchronize(s)
        yield from rt.launch(s, k)

    _, rt = _run(program)
    first, second = rt.log.records
    assert first.kernel_end_s == pytest.approx(L + D + 11e-6, rel=REL)
    # the host resumes only once the stream drained, plus the return latency
    assert second.runtime_begin_s == pytest.approx(first.kernel_end_s + R, rel=REL)
    # and the GPU sits idle for the return latency, the launch call and the doorbell
    assert second.kernel_start_s == pytest.approx(first.kernel_end_s + R + L + D, rel=REL)


def test_without_a_sync_the_second_kernel_queues_behind_the_first() -> None:
    k = _kernel(10e-6)

    def program(rt: HostRuntime, node: Node) -> Generator[simpy.Event, Any, None]:
        s = node.gpus["gpu0"].stream(0)
        yield from rt.launch(s, k)
        yield from rt.launch(s, k)

    _, rt = _run(program)
    first, second = rt.log.records
    assert second.runtime_begin_s == pytest.approx(L, rel=REL)
    assert second.kernel_start_s == pytest.approx(first.kernel_end_s, rel=REL)
    assert second.launch_queue_s == pytest.approx(first.kernel_end_s - L, rel=REL)


def test_device_sync_waits_for_every_stream() -> None:
    short, long = _kernel(10e-6, sms=66), _kernel(30e-6, sms=66)

    def program(rt: HostRuntime, node: Node) -> Generator[simpy.Event, Any, None]:
        gpu = node.gpus["gpu0"]
        yield from rt.launch(gpu.stream(0), long)
        yield from rt.launch(gpu.stream(1), short)
        yield from rt.device_synchronize(gpu)
        yield from rt.python_step("after")

    node, rt = _run(program)
    long_rec, _ = rt.log.records
    assert long_rec.kernel_end_s == pytest.approx(L + D + 31e-6, rel=REL)
    assert node.sim.env.now == pytest.approx(long_rec.kernel_end_s + R + PY, rel=REL)


def test_item_copies_to_the_host_and_blocks_until_the_copy_returns() -> None:
    k = _kernel(20e-6)

    def program(rt: HostRuntime, node: Node) -> Generator[simpy.Event, Any, None]:
        s = node.gpus["gpu0"].stream(0)
        route = node.fabric.route("gpu0", node.host_of["gpu0"])
        yield from rt.to_host("aten::item", s, route, 8, launches=[KernelLaunch(s, k)])
        yield from rt.launch(s, k)

    _, rt = _run(program)
    kernel, copy, after = rt.log.records
    assert kernel.kernel_start_s == pytest.approx(F_ELEM + L + D, rel=REL)
    # the copy waits behind the kernel on the stream
    assert copy.kernel_start_s == pytest.approx(kernel.kernel_end_s, rel=REL)
    assert copy.op_end_s == pytest.approx(copy.kernel_end_s + R, rel=REL)
    assert after.runtime_begin_s == pytest.approx(copy.kernel_end_s + R, rel=REL)
    assert after.kernel_start_s == pytest.approx(copy.kernel_end_s + R + L + D, rel=REL)


@pytest.mark.parametrize("n", [1, 8, 64])
def test_a_graph_of_n_kernels_costs_one_launch_on_the_host(n: int) -> None:
    k = _kernel(10e-6)  # 11 us > P: nodes run back to back after the first

    def program(rt: HostRuntime, node: Node) -> Generator[simpy.Event, Any, None]:
        yield from rt.graph_launch(node.gpus["gpu0"].stream(0), [k] * n)

    _, rt = _run(program)
    assert rt.thread.busy_s == pytest.approx(G, rel=REL)
    assert rt.thread.calls == 1
    records = rt.log.records
    assert len(records) == n and {r.correlation for r in records} == {records[0].correlation}
    assert {r.call for r in records} == {RuntimeCall.graph_launch}
    assert all(r.runtime_end_s == pytest.approx(G, rel=REL) for r in records)
    assert records[0].kernel_start_s == pytest.approx(G + D + P, rel=REL)
    assert records[-1].kernel_end_s == pytest.approx(G + D + P + n * 11e-6, rel=REL)


def test_graph_nodes_shorter_than_the_node_cost_are_issue_bound() -> None:
    k = _kernel(0.0)  # 1 us floor = P: node i starts at G + D + i*P
    n = 10

    def program(rt: HostRuntime, node: Node) -> Generator[simpy.Event, Any, None]:
        yield from rt.graph_launch(node.gpus["gpu0"].stream(0), [k] * n)

    _, rt = _run(program)
    for i, rec in enumerate(rt.log.records, start=1):
        assert rec.kernel_start_s == pytest.approx(G + D + i * P, rel=REL)


def test_a_full_launch_queue_blocks_the_launch_call() -> None:
    k = _kernel(99e-6)  # 100 us
    depth, n = 4, 10

    def program(rt: HostRuntime, node: Node) -> Generator[simpy.Event, Any, None]:
        s = node.gpus["gpu0"].stream(0)
        for _ in range(n):
            yield from rt.launch(s, k)

    _, rt = _run(program, depth=depth)
    recs = rt.log.records
    for j in range(depth):
        assert recs[j].runtime_end_s == pytest.approx((j + 1) * L, rel=REL)
    for j in range(depth, n):
        # the call returns when the launch `depth` places earlier finishes
        assert recs[j].runtime_end_s == pytest.approx(recs[j - depth].kernel_end_s, rel=REL)
    assert rt.thread.busy_s == pytest.approx(n * L, rel=REL)
    # the GPU never waits: kernels still run back to back
    assert recs[-1].kernel_end_s == pytest.approx(L + D + n * 100e-6, rel=REL)


def test_unbounded_queue_lets_the_host_run_ahead() -> None:
    k = _kernel(99e-6)

    def program(rt: HostRuntime, node: Node) -> Generator[simpy.Event, Any, None]:
        s = node.gpus["gpu0"].stream(0)
        for _ in range(10):
            yield from rt.launch(s, k)

    _, rt = _run(program)
    assert rt.log.records[-1].runtime_end_s == pytest.approx(10 * L, rel=REL)


@pytest.mark.parametrize("count", [3, 20])
@pytest.mark.parametrize("bytes_each", [0, 1 << 24])
def test_kernel_chain_with_a_small_queue_des_equals_analytic(count: int, bytes_each: int) -> None:
    kernel = ElementwiseOp(bytes_read=bytes_each, bytes_written=0) if bytes_each else NullOp()
    wl = KernelChainWorkload(kernel=kernel, count=count)
    prof = make_profile(launch_queue_depth=4)
    des = simulate(make_scenario(wl, profile=prof, fidelity=Fidelity.des))
    ana = simulate(make_scenario(wl, profile=prof, fidelity=Fidelity.analytic))
    assert des.makespan_s == pytest.approx(ana.makespan_s, rel=REL)
    for key in ("host_busy_fraction", "tklqt_s", "sm_active"):
        assert des.metrics[key] == pytest.approx(ana.metrics[key], rel=REL), key


def test_a_value_outside_its_stated_range_is_rejected() -> None:
    with pytest.raises(ValidationError, match="outside its range"):
        Measured(value=5.0, source="test", low=1.0, high=2.0)
    with pytest.raises(ValidationError, match="both"):
        Measured(value=1.0, source="test", low=1.0)


@pytest.mark.parametrize("path", sorted(PROFILES.glob("*.json")), ids=lambda p: p.stem)
def test_shipped_host_costs_state_their_range(path: Path) -> None:
    host = load_profile(path).host
    for name in type(host).model_fields:
        value = getattr(host, name)
        assert value.low is not None and value.high is not None, name
        assert value.low <= value.value <= value.high and value.source, name


def test_op_kinds_cost_their_dispatch_and_runtime_calls() -> None:
    k = _kernel(0.0)

    def program(rt: HostRuntime, node: Node) -> Generator[simpy.Event, Any, None]:
        s = node.gpus["gpu0"].stream(0)
        yield from rt.op("aten::view", OpKind.view)
        yield from rt.op("aten::topk", OpKind.reduction, [KernelLaunch(s, k)], records_graph=True)
        yield from rt.op("aten::mm", OpKind.elementwise, [KernelLaunch(s, k, RuntimeCall.cublas)])

    _, rt = _run(program)
    topk, mm = rt.log.records
    assert topk.op_begin_s == pytest.approx(F_VIEW, rel=REL)
    assert topk.runtime_begin_s == pytest.approx(F_VIEW + F_RED + AUTOGRAD, rel=REL)
    assert topk.runtime_end_s == pytest.approx(topk.runtime_begin_s + L, rel=REL)
    assert mm.runtime_begin_s == pytest.approx(topk.op_end_s + F_ELEM, rel=REL)
    assert mm.runtime_end_s == pytest.approx(mm.runtime_begin_s + CUBLAS, rel=REL)
    assert mm.external_id != topk.external_id != 0


def test_host_bound_chain_tklqt_is_n_launch_latencies() -> None:
    # SKIP's plateau: the GPU is idle at every launch, so t_lj = L + D for every kernel
    k, n = _kernel(0.0), 50  # 1 us < L

    def program(rt: HostRuntime, node: Node) -> Generator[simpy.Event, Any, None]:
        s = node.gpus["gpu0"].stream(0)
        for _ in range(n):
            yield from rt.launch(s, k)

    _, rt = _run(program)
    assert rt.log.tklqt_s() == pytest.approx(n * (L + D), rel=REL)
    assert all(r.launch_tax_s == pytest.approx(D, rel=REL) for r in rt.log.records)


def test_sm_active_counts_host_gaps() -> None:
    k = _kernel(9e-6, sms=66)  # half the SMs for 10 us

    def program(rt: HostRuntime, node: Node) -> Generator[simpy.Event, Any, None]:
        s = node.gpus["gpu0"].stream(0)
        yield from rt.launch(s, k)
        yield from rt.stream_synchronize(s)

    node, _ = _run(program)
    interval = L + D + 10e-6 + R
    assert sm_active(node.gpus.values(), interval) == pytest.approx(66 * 10e-6 / (132 * interval))


def _mixed_program(rt: HostRuntime, node: Node) -> Generator[simpy.Event, Any, None]:
    s = node.gpus["gpu0"].stream(0)
    k = _kernel(5e-6)
    route = node.fabric.route("gpu0", node.host_of["gpu0"])
    yield from rt.op("aten::add", OpKind.elementwise, [KernelLaunch(s, k), KernelLaunch(s, k)])
    yield from rt.to_host("aten::nonzero", s, route, 8, OpKind.indexing, [KernelLaunch(s, k)])
    yield from rt.graph_launch(s, [k, k, k])
    yield from rt.launch(s, k)
    yield from rt.stream_synchronize(s)


def test_trace_pairs_every_kernel_with_exactly_one_runtime_call() -> None:
    node, rt = _run(_mixed_program, trace=True)
    doc = json.loads(json.dumps(chrome_trace(node.sim.recorder.events, "t")))
    events = doc["traceEvents"]
    device = [e for e in events if e["ph"] == "X" and e.get("cat") in ("kernel", "gpu_memcpy")]
    runtime = [e for e in events if e["ph"] == "X" and e.get("cat") == "cuda_runtime"]
    calls = Counter(e["args"]["correlation"] for e in runtime)
    assert len(device) == len(rt.log.records) == 2 + 2 + 3 + 1
    for e in device:
        assert calls[e["args"]["correlation"]] == 1, e
    # every launch call launched something; the syncs (runtime calls too) launched nothing
    launched = {e["args"]["correlation"] for e in device}
    assert {e["name"] for e in runtime if e["args"]["correlation"] not in launched} == {
        "cudaStreamSynchronize"
    }
    # cpu_ops enclose their runtime calls on the host thread (how tools link them by time)
    ops = [e for e in events if e["ph"] == "X" and e.get("cat") == "cpu_op"]
    assert [e["name"] for e in ops] == ["aten::add", "aten::nonzero"]
    for op in ops:
        ext = op["args"]["External id"]
        inside = [r for r in runtime if r["args"].get("External id") == ext]
        assert len(inside) >= 2 and all(
            op["ts"] <= r["ts"] and r["ts"] + r["dur"] <= op["ts"] + op["dur"] + 1e-9
            for r in inside
        )
    # one ac2g flow per correlation id, from the call to its (first) kernel
    starts = {e["id"]: e for e in events if e["ph"] == "s" and e["cat"] == "ac2g"}
    ends = {e["id"]: e for e in events if e["ph"] == "f" and e["cat"] == "ac2g"}
    assert starts.keys() == ends.keys() == launched
    assert all(ends[i]["bp"] == "e" and starts[i]["ts"] <= ends[i]["ts"] for i in starts)


def test_kernel_chain_trace_pairs_its_launches() -> None:
    wl = KernelChainWorkload(kernel=NullOp(), count=12)
    result = simulate(make_scenario(wl, trace=True))
    assert result.trace is not None
    events = chrome_trace(result.trace, "t")["traceEvents"]
    kernels = [e for e in events if e.get("cat") == "kernel"]
    launches = [e for e in events if e.get("name") == "cudaLaunchKernel"]
    assert len(kernels) == len(launches) == 12
    assert sorted(e["args"]["correlation"] for e in kernels) == sorted(
        e["args"]["correlation"] for e in launches
    )
