"""SoloGPU: a lone stream's kernel and copy end times in closed form equal the event engine's to
the bit (GPURuntime.run_kernel and copy through the fluid network), on random kernels started at
random times, large ones included (where the wake-up arithmetic rounds)."""

from __future__ import annotations

import random
from collections.abc import Generator
from typing import Any

import simpy
from conftest import make_profile, make_star_topology

from gpusim.engine.sim import Simulation
from gpusim.execution.launch import run_cost
from gpusim.hardware.node import Node
from gpusim.hardware.solo_gpu import SoloGPU
from gpusim.kernels.cost import KernelCost


def _random_kernel(rng: random.Random, hbm_Bps: float) -> KernelCost:
    """A kernel of any branch of run_kernel: HBM and L2 flows, HBM only (capped or not), or
    no bytes at all."""

    def pick(values: tuple[float, ...]) -> float:
        return rng.choice(values) * rng.uniform(0.5, 2.0)

    hbm = rng.choice((0.0, pick((1e3, 1e6, 3e8))))
    l2 = rng.choice((0.0, pick((1e5, 1e8))))
    compute = rng.choice((0.0, pick((1e-7, 1e-5, 1e-3))))
    floor = rng.choice((0.0, pick((2e-6,))))
    return KernelCost(
        name="k",
        flops=1.0,
        hbm_bytes=hbm,
        blocks=1,
        sms=rng.randint(1, 200),
        compute_time_s=compute,
        floor_s=floor,
        hbm_achievable_Bps=hbm_Bps,
        lower_bound_s=0.0,
        l2_bytes=l2,
    )


def test_kernels_and_copies_end_when_the_des_ends_them() -> None:
    rng = random.Random(13)
    node = Node(make_star_topology(2), make_profile(), Simulation())
    env, gpu = node.sim.env, node.gpus["gpu0"]
    route = node.fabric.route("gpu0", node.host_of["gpu0"])
    solo = SoloGPU(gpu)
    kernels = [_random_kernel(rng, gpu.rates.hbm_achievable_Bps) for _ in range(400)]
    pairs: list[tuple[float, float]] = []

    def lone() -> Generator[simpy.Event, Any, None]:
        for i, cost in enumerate(kernels):
            yield env.timeout(rng.choice((0.0, 1e-6, 3.7, 1234.5)))  # large clocks round more
            t0 = float(env.now)
            if i % 5 == 0:  # a copy instead
                size = rng.choice((0, 1, 8, 1e6))
                yield from gpu.copy(route.resources, route.latency_s, size, "copy")
                want = solo.copy_end_s(route.resources, route.latency_s, size, t0)
            else:
                yield from run_cost(gpu, cost)
                want = solo.kernel_end_s(cost, t0)
            pairs.append((float(env.now), want))

    env.process(lone())
    node.sim.run()
    assert len(pairs) == len(kernels)
    assert [des for des, _ in pairs] == [closed for _, closed in pairs]
