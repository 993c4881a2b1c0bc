"""The static platform: one per (topology, profile), named resource indices the DES node
registers as they are, and the one static max-min helper."""

from __future__ import annotations

import math

import pytest
from conftest import make_profile, make_star_topology

from gpusim.engine.sim import Simulation
from gpusim.errors import SimulationError
from gpusim.hardware.node import Node
from gpusim.hardware.platform import LINK_GROUP, MEMORY_GROUP, Platform
from gpusim.hardware.static_flows import StaticFlow, static_completion_s, static_rates_Bps
from gpusim.workloads import common


def test_one_platform_per_topology_and_profile() -> None:
    topo, prof = make_star_topology(4), make_profile()
    platform = Platform.of(topo, prof)
    assert Platform.of(topo, prof) is platform
    assert Node(topo, prof, Simulation()).platform is platform
    assert Platform.of(topo, make_profile(hbm_efficiency=0.5)) is not platform
    assert Platform.of(make_star_topology(4), prof) is not platform


def test_the_node_registers_the_platforms_resources_at_their_indices() -> None:
    topo, prof = make_star_topology(3), make_profile(hbm_efficiency=0.5)
    platform = Platform.of(topo, prof)
    node = Node(topo, prof, Simulation())
    assert node.network.names == [r.name for r in platform.resources]
    assert node.network.capacity_Bps == list(platform.capacities_Bps)
    for gpu_id, index in platform.hbm_resource.items():
        assert node.gpus[gpu_id].hbm == index
        assert platform.resources[index].name == f"{gpu_id}.hbm"
        assert platform.resources[index].group == MEMORY_GROUP
        assert not platform.is_link(index)
        assert platform.capacities_Bps[index] == pytest.approx(0.5 * 3350e9)
    assert [r.index for r in platform.links] == [
        r.index for r in platform.resources if r.group == LINK_GROUP
    ]
    assert all(platform.is_link(link.index) for link in platform.links)


def test_rates_of_an_unknown_gpu_name_it() -> None:
    platform = Platform.of(make_star_topology(2), make_profile())
    assert platform.rates_of(["gpu1", "gpu0"]) == [platform.rates["gpu1"], platform.rates["gpu0"]]
    with pytest.raises(SimulationError, match="no GPU 'gpu9'"):
        platform.gpu_rates("gpu9")


def test_static_rates_share_links_and_hbm_max_min_fairly() -> None:
    platform = Platform.of(make_star_topology(3), make_profile())
    up = platform.route("gpu0", "gpu1").resources[0]  # gpu0's uplink, shared by both flows
    hbm = platform.hbm_resource["gpu0"]
    link_Bps = platform.capacities_Bps[up]
    to1, to2 = platform.route("gpu0", "gpu1"), platform.route("gpu0", "gpu2")
    assert static_rates_Bps(platform, [to1.resources, to2.resources]) == [
        link_Bps / 2,
        link_Bps / 2,
    ]
    # a capped flow leaves the rest of the link to the other one
    capped = static_rates_Bps(platform, [to1.resources, to2.resources], [link_Bps / 4, math.inf])
    assert capped == pytest.approx([link_Bps / 4, 3 * link_Bps / 4])
    # HBM is a resource like a link: two flows on one GPU's HBM split it
    both = static_rates_Bps(platform, [(hbm,), (hbm,)])
    assert both == [platform.capacities_Bps[hbm] / 2] * 2


def test_static_completion_adds_issue_time_latency_and_size_over_rate() -> None:
    platform = Platform.of(make_star_topology(2), make_profile())
    route = platform.route("gpu0", "gpu1")
    flows = [StaticFlow(route, 1e6, 1e-6), StaticFlow(route, 1e6, 0.0)]
    rate = platform.capacities_Bps[route.resources[0]] / 2
    assert static_completion_s(platform, flows) == [
        1e-6 + route.latency_s + 1e6 / rate,
        0.0 + route.latency_s + 1e6 / rate,
    ]
    # the workloads' name for it is the same function, and a bare fabric serves it too
    assert common.static_completion_s is static_completion_s
    assert static_completion_s(platform.fabric, flows) == static_completion_s(platform, flows)
