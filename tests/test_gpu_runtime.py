"""Runtime GPU: SMs are a shared pool (kernels that fit run concurrently, others queue in
order), HBM is shared by concurrent memory-bound kernels, and streams keep FIFO order."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

import pytest
import simpy
from conftest import make_h100_spec, make_profile, make_star_topology

from gpusim.engine.sim import Simulation
from gpusim.execution.launch import run_cost, run_cost_then
from gpusim.hardware.node import Node
from gpusim.kernels.cost import KernelCost

HBM_Bps = 3350e9 * 0.9  # fixture: nameplate 3350 GB/s, efficiency 0.9


def _node() -> Node:
    return Node(make_star_topology(1), make_profile(kernel_floor_us=1.0), Simulation())


def _kernel(blocks: int, compute_s: float = 0.0, hbm_B: float = 0.0, name: str = "k") -> KernelCost:
    return KernelCost(
        name=name,
        flops=0.0,
        hbm_bytes=hbm_B,
        blocks=blocks,
        sms=min(blocks, 132),
        compute_time_s=compute_s,
        floor_s=1e-6,
        hbm_achievable_Bps=HBM_Bps,
        lower_bound_s=0.0,
    )


def _run(node: Node, kernels: list[tuple[int, KernelCost]]) -> list[float]:
    gpu = node.gpus["gpu0"]
    done = [gpu.stream(s).submit(k.name, partial(run_cost, gpu, k)) for s, k in kernels]
    node.sim.run()
    return [_end_s(d) for d in done]


def _end_s(done: simpy.Event) -> float:
    """The completion time a stream op's event carries."""
    assert isinstance(done.value, float)
    return done.value


def test_kernels_that_fit_together_overlap() -> None:
    node = _node()
    a, b = _kernel(66, compute_s=10e-6), _kernel(66, compute_s=10e-6)
    assert _run(node, [(0, a), (1, b)]) == pytest.approx([11e-6, 11e-6], rel=1e-12)


def test_kernels_that_need_the_whole_gpu_serialise() -> None:
    node = _node()
    a, b = _kernel(132, compute_s=10e-6), _kernel(100, compute_s=10e-6)
    assert _run(node, [(0, a), (1, b)]) == pytest.approx([11e-6, 22e-6], rel=1e-12)


def test_same_stream_is_fifo_even_when_sms_are_free() -> None:
    node = _node()
    a, b = _kernel(10, compute_s=10e-6), _kernel(10, compute_s=1e-6)
    assert _run(node, [(0, a), (0, b)]) == pytest.approx([11e-6, 13e-6], rel=1e-12)


def test_concurrent_memory_bound_kernels_share_hbm() -> None:
    node = _node()
    size = 1e9
    a, b = _kernel(66, hbm_B=size), _kernel(66, hbm_B=size)
    # both stream 1 GB at once: each gets half the achievable HBM bandwidth
    expected = 1e-6 + 2 * size / HBM_Bps
    assert _run(node, [(0, a), (1, b)]) == pytest.approx([expected, expected], rel=1e-9)


def test_compute_bound_kernel_is_not_sped_up_by_idle_hbm() -> None:
    node = _node()
    k = _kernel(132, compute_s=50e-6, hbm_B=1e6)  # 1 MB would take 0.33 us at full HBM rate
    assert _run(node, [(0, k)]) == pytest.approx([51e-6], rel=1e-9)


def test_busy_sm_integral() -> None:
    node = _node()
    _run(node, [(0, _kernel(66, compute_s=10e-6)), (1, _kernel(33, compute_s=21e-6))])
    node.finish()
    gpu = node.gpus["gpu0"]
    assert gpu.busy_sm_s == pytest.approx(66 * 11e-6 + 33 * 22e-6, rel=1e-12)


def test_small_grids_occupy_few_sms_by_occupancy() -> None:
    # 256 threads x 32 registers: 8 blocks per SM (threads and registers both allow 8), so a grid
    # of 20 blocks needs ceil(20 / 8) = 3 SMs, and 2000 blocks need every SM.
    from conftest import make_h100_spec

    from gpusim.kernels.cost import BlockShape, occupied_sms

    block = BlockShape(threads=256, registers_per_thread=32, shared_mem_bytes=0)
    h100 = make_h100_spec()
    assert occupied_sms(20, block, h100) == 3
    assert occupied_sms(2000, block, h100) == 132
    # 100 KiB of shared memory: 2 blocks per SM, so 20 blocks need 10 SMs
    big = BlockShape(threads=256, registers_per_thread=32, shared_mem_bytes=100 * 1024)
    assert occupied_sms(20, big, h100) == 10


def test_copy_engines_limit_concurrent_copies() -> None:
    # 4 copies on 4 streams over one 63 GB/s x 0.8 PCIe link (latency L = 1 us) with 3 copy
    # engines: three share the link and end at L + 3S/bw; the fourth then runs alone.
    node = Node(
        make_star_topology(1, gpu=make_h100_spec(copy_engines=3)), make_profile(), Simulation()
    )
    gpu = node.gpus["gpu0"]
    route = node.fabric.route("cpu0", "gpu0")
    size, bw, lat = 1e8, 63e9 * 0.8, 1000e-9
    done = [
        gpu.stream(s).submit("copy", lambda: gpu.copy(route.resources, route.latency_s, size, "c"))
        for s in range(4)
    ]
    node.sim.run()
    ends = sorted(_end_s(d) for d in done)
    assert ends[:3] == pytest.approx([lat + 3 * size / bw] * 3, rel=1e-9)
    assert ends[3] == pytest.approx(2 * lat + 4 * size / bw, rel=1e-9)


def _log_done(
    log: list[tuple[float, str]], env: simpy.Environment, label: str, _ev: simpy.Event
) -> None:
    log.append((env.now, f"{label} done"))


def _stream_program(seed: int, way: str) -> tuple[list[tuple[float, str]], int]:
    """Random kernels (every branch of run_kernel, SM counts that make kernels queue for SMs,
    times on a 1 us grid so that many events share an instant) submitted on 3 streams of one
    GPU by 2 host processes with random doorbell delays; logs (time, what) at each op's start
    and end and where the host sees it done. ``way``: ``process`` (each op a SimPy process, as
    streams ran them before), ``submit`` (:meth:`Stream.submit`) or ``then``
    (:meth:`Stream.submit_then` with ``run_cost_then``). Returns the log and the events
    scheduled."""
    node = _node()
    env, gpu = node.sim.env, node.gpus["gpu0"]
    log: list[tuple[float, str]] = []
    tails: dict[int, simpy.Event] = {}

    def as_process(
        stream_id: int, op: Callable[[], Generator[simpy.Event, Any, None]], delay_s: float
    ) -> simpy.Event:
        prev, done = tails.get(stream_id), env.event()
        tails[stream_id] = done

        def run() -> Generator[simpy.Event, Any, None]:
            if delay_s > 0:
                yield env.timeout(delay_s)
            if prev is not None and prev.callbacks is not None:
                yield prev
            yield from op()
            done.succeed(float(env.now))

        env.process(run())
        return done

    def submit(label: str, stream_id: int, cost: KernelCost, delay_s: float) -> simpy.Event:
        def op() -> Generator[simpy.Event, Any, None]:
            log.append((env.now, f"{label} start"))
            yield from run_cost(gpu, cost)
            log.append((env.now, f"{label} end"))

        def start(then: Callable[[], None]) -> None:
            log.append((env.now, f"{label} start"))

            def end() -> None:
                log.append((env.now, f"{label} end"))
                then()

            run_cost_then(gpu, cost, end)

        if way == "process":
            return as_process(stream_id, op, delay_s)
        if way == "submit":
            return gpu.stream(stream_id).submit(label, op, delay_s)
        return gpu.stream(stream_id).submit_then(label, start, delay_s)

    def host(h: int) -> Generator[simpy.Event, Any, None]:
        rng = random.Random(f"{seed}/{h}")
        for i in range(25):
            yield env.timeout(rng.choice((0, 0, 1e-6, 2e-6)))
            label = f"h{h}.{i}"
            cost = dataclasses.replace(
                _kernel(
                    rng.choice((1, 40, 100, 132)),
                    compute_s=rng.choice((0.0, 1e-6, 3e-6)),
                    hbm_B=rng.choice((0.0, 0.0, 1e3, 1e6)),
                ),
                floor_s=rng.choice((0.0, 1e-6)),
                l2_bytes=rng.choice((0.0, 0.0, 1e5)),
            )
            done = submit(label, rng.randrange(3), cost, rng.choice((0.0, 1e-6, 2e-6)))
            if rng.random() < 0.2:
                yield done
                log.append((env.now, f"{label} seen"))
            else:
                done.callbacks.append(partial(_log_done, log, env, label))

    for h in range(2):
        env.process(host(h))
    node.sim.run()
    return log, env.events_scheduled


def test_stream_ops_run_where_their_processes_would() -> None:
    """Streams run ops without a process per op, and kernels as calls: the same steps at the
    same times in the same order as with processes, on random contended programs."""
    for seed in range(60):
        reference, process_events = _stream_program(seed, "process")
        assert len(reference) >= 3 * 50, seed
        submitted, submit_events = _stream_program(seed, "submit")
        assert submitted == reference, seed
        called, then_events = _stream_program(seed, "then")
        assert called == reference, seed
        assert then_events < submit_events < process_events
