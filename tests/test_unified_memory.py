"""Unified memory (a Jetson SoC): the GPU's memory resource is its host CPU's, one capacity that
kernels and transfers share, reached from the host with no link (gpusim/hardware/fabric.py)."""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
import simpy

from gpusim.engine.sim import Simulation
from gpusim.errors import SpecError
from gpusim.hardware.fabric import Fabric
from gpusim.hardware.node import Node
from gpusim.hardware.platform import Platform
from gpusim.hardware.rates import gpu_rates
from gpusim.spec.checks import check_topology
from gpusim.spec.hardware import MemoryKind
from gpusim.spec.loading import load_profile, load_topology
from gpusim.spec.topology import Topology

ROOT = Path(__file__).resolve().parents[1]
EDGE = ("jetson_tx2", "jetson_orin_nx")


def _topology(name: str) -> Topology:
    return load_topology(ROOT / "topologies" / f"{name}.json")


def _platform(name: str) -> Platform:
    topo = _topology(name)
    return Platform(topo, load_profile(ROOT / "topologies" / "profiles" / f"{name}.json"))


@pytest.mark.parametrize("name", EDGE)
def test_edge_topology_loads_and_checks(name: str) -> None:
    topo = _topology(name)
    assert list(check_topology(topo)) == []
    (gpu,) = topo.gpus()
    assert gpu.model.memory_kind is MemoryKind.lpddr and gpu.model.unified_memory
    assert topo.default_profile == name


@pytest.mark.parametrize("name", EDGE)
def test_unified_gpu_memory_is_its_hosts(name: str) -> None:
    platform = _platform(name)
    fabric = platform.fabric
    mem = fabric.host_memory["cpu0"]
    assert fabric.hbm["gpu0"].index == mem.index
    assert platform.hbm_resource["gpu0"] == mem.index
    # one memory resource: two link directions, the pool, then the GPU's L2
    assert len(fabric.capacities_Bps) == len(fabric.resources) + 1
    assert platform.l2_resource["gpu0"] == len(fabric.capacities_Bps)
    assert len(platform.resources) == len(fabric.capacities_Bps) + 1
    assert [r.index for r in platform.resources] == list(range(len(platform.resources)))
    # the GPU's achievable rate is the pool's, at the profile's lpddr fraction
    rates = platform.rates["gpu0"]
    assert rates.hbm_achievable_Bps == pytest.approx(mem.capacity_Bps, rel=1e-15)
    lpddr = platform.profile.memory_efficiency[MemoryKind.lpddr].value
    assert mem.capacity_Bps == pytest.approx(mem.nameplate_Bps * lpddr, rel=1e-15)


@pytest.mark.parametrize("name", EDGE)
def test_host_to_unified_gpu_has_no_link(name: str) -> None:
    fabric = _platform(name).fabric
    mem = fabric.host_memory["cpu0"].index
    for src, dst in (("cpu0", "gpu0"), ("gpu0", "cpu0")):
        route = fabric.route(src, dst)
        assert route.links == ()
        assert route.latency_s == 0.0
        assert route.resources == (mem,)
    # storage -> cpu0 -> gpu0: the storage link, then the shared pool once
    route = fabric.route("storage0", "gpu0")
    (link,) = route.links
    assert fabric.resources[link].name == "storage0->cpu0"
    assert route.resources == (link, mem)
    assert route.latency_s == pytest.approx(fabric.route("storage0", "cpu0").latency_s)


def test_nameplate_fabric_aliases_too() -> None:
    fabric = Fabric(_topology("jetson_tx2"), None)
    assert fabric.hbm["gpu0"].index == fabric.host_memory["cpu0"].index
    assert fabric.capacities_Bps[-1] == pytest.approx(59.7e9)


def _timed(env: simpy.Environment, proc: Generator[Any, Any, None], ends: list[float]) -> Any:
    def run() -> Generator[Any, Any, None]:
        yield from proc
        ends.append(float(env.now))

    return env.process(run())


def _run_kernel_and_copy(
    name: str, src: str, kernel_B: float, copy_B: float, floor_s: float
) -> tuple[Node, float, float]:
    topo = _topology(name)
    profile = load_profile(ROOT / "topologies" / "profiles" / f"{name}.json")
    node = Node(topo, profile, Simulation())
    gpu = node.gpus["gpu0"]
    env = node.sim.env
    route = node.fabric.route(src, "gpu0")
    kernel: list[float] = []
    copy: list[float] = []
    _timed(env, gpu.run_kernel("k", gpu.rates.sm_count, floor_s, 0.0, kernel_B), kernel)
    _timed(env, gpu.copy(route.resources, route.latency_s, copy_B, "c"), copy)
    node.sim.run()
    return node, kernel[0], copy[0]


def test_kernel_and_host_copy_share_the_pool_max_min() -> None:
    """cpu0 -> gpu0 draws on the pool only: the copy runs alone at the pool's capacity C during
    the kernel's floor f, then both share C equally. With copy bytes = kernel bytes + C f they
    end together at f + 2 H / C (the kernel alone would end at f + H / C)."""
    platform = _platform("jetson_tx2")
    cap = platform.fabric.host_memory["cpu0"].capacity_Bps
    floor_s, kernel_B = 5e-6, 64e6
    node, kernel_end, copy_end = _run_kernel_and_copy(
        "jetson_tx2", "cpu0", kernel_B, kernel_B + cap * floor_s, floor_s
    )
    assert node.gpus["gpu0"].hbm == platform.hbm_resource["gpu0"]
    assert kernel_end == pytest.approx(floor_s + 2 * kernel_B / cap, rel=1e-9)
    assert copy_end == pytest.approx(kernel_end, rel=1e-9)


def test_kernel_and_storage_load_share_the_pool_max_min() -> None:
    """storage0 -> gpu0 is held to the eMMC bus (0.4 GB/s at link efficiency 1) and draws that
    much of the pool; the kernel gets the rest, C - 0.4 GB/s (hand max-min)."""
    platform = _platform("jetson_tx2")
    cap = platform.fabric.host_memory["cpu0"].capacity_Bps
    bus_Bps = 0.4e9
    floor_s, kernel_B, copy_B = 1e-6, 32e6, 4e6  # the copy outlasts the kernel
    route = platform.fabric.route("storage0", "gpu0")
    _, kernel_end, copy_end = _run_kernel_and_copy(
        "jetson_tx2", "storage0", kernel_B, copy_B, floor_s
    )
    assert kernel_end == pytest.approx(floor_s + kernel_B / (cap - bus_Bps), rel=1e-9)
    assert copy_end == pytest.approx(route.latency_s + copy_B / bus_Bps, rel=1e-9)


def test_unified_gpu_rates_use_the_pool_kind() -> None:
    topo = _topology("jetson_orin_nx")
    profile = load_profile(ROOT / "topologies" / "profiles" / "jetson_orin_nx.json")
    rates = gpu_rates(topo.gpus()[0].model, profile)
    assert rates.hbm_achievable_Bps == pytest.approx(
        102.4e9 * profile.memory_efficiency[MemoryKind.lpddr].value
    )


def _tx2_with_host_memory(tmp_path: Path, memory: dict[str, Any]) -> Path:
    doc = json.loads((ROOT / "topologies" / "jetson_tx2.json").read_text())
    doc["devices"][0]["memory"] = memory
    path = tmp_path / "bad_tx2.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("kind", "capacity_GB", "bw_GBps"),
    [("ddr", 8, 59.7), ("lpddr", 16, 59.7), ("lpddr", 8, 51.2)],
    ids=["kind", "capacity", "bandwidth"],
)
def test_unified_gpu_with_another_host_pool_is_refused(
    tmp_path: Path, kind: str, capacity_GB: float, bw_GBps: float
) -> None:
    memory = {
        "name": "another pool",
        "source": "test",
        "kind": kind,
        "capacity_GB": capacity_GB,
        "bw_GBps": bw_GBps,
        "latency_ns": 100,
    }
    with pytest.raises(SpecError) as err:
        load_topology(_tx2_with_host_memory(tmp_path, memory))
    message = str(err.value)
    assert "\n" not in message
    assert "$.devices[1].host: " in message
    assert "GPU 'gpu0' has unified lpddr memory" in message
    assert "same pool" in message
