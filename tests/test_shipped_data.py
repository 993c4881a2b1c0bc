"""The shipped hardware data (topologies/, profiles, components) validates and is coherent."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import networkx as nx
import pytest
from pydantic import BaseModel

from gpusim.spec.base import Sourced
from gpusim.spec.hardware import GPUSpec, HostCPUSpec, MemoryTierSpec
from gpusim.spec.loading import load_model, load_profile, load_topology
from gpusim.spec.profile import CalibrationProfile, InstructionPath, native_tensor_path
from gpusim.spec.refs import SHIPPED_DIRS, data_root
from gpusim.spec.topology import CPUDevice, GPUDevice, Topology

ROOT = data_root()
TOPOLOGY_FILES = sorted((ROOT / SHIPPED_DIRS["topology"]).glob("*.json"))
PROFILE_FILES = sorted((ROOT / SHIPPED_DIRS["profile"]).glob("*.json"))
COMPONENT_MODELS: dict[str, type[BaseModel]] = {
    "gpu": GPUSpec,
    "cpu": HostCPUSpec,
    "memory": MemoryTierSpec,
}
COMPONENT_FILES = sorted(
    (kind, path) for kind in COMPONENT_MODELS for path in (ROOT / SHIPPED_DIRS[kind]).glob("*.json")
)

# SM counts from NVIDIA's architecture whitepapers (H100: 132 SXM5, 114 PCIe; A100: 108).
EXPECTED_SMS = {
    "h100_sxm5": 132,
    "gh200_h100_96gb": 132,
    "h100_pcie": 114,
    "a100_sxm4_80gb": 108,
    "a100_pcie_80gb": 108,
    "jetson_tx2": 2,
    "jetson_orin_nx_8gb": 8,
}


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _gpu_components() -> dict[str, GPUSpec]:
    return {path.stem: load_model(GPUSpec, path) for kind, path in COMPONENT_FILES if kind == "gpu"}


def test_shipped_data_is_present() -> None:
    assert len(TOPOLOGY_FILES) >= 11
    assert {p.stem for p in PROFILE_FILES} >= {"h100_sxm", "h100_pcie", "gh200", "a100"}
    assert set(EXPECTED_SMS) <= {p.stem for k, p in COMPONENT_FILES if k == "gpu"}


@pytest.mark.parametrize(
    ("kind", "path"), COMPONENT_FILES, ids=[f"{k}/{p.stem}" for k, p in COMPONENT_FILES]
)
def test_component_validates(kind: str, path: Path) -> None:
    spec = load_model(COMPONENT_MODELS[kind], path)
    assert isinstance(spec, Sourced) and spec.source.strip()


@pytest.mark.parametrize("stem", sorted(EXPECTED_SMS))
def test_gpu_sm_count_matches_reference(stem: str) -> None:
    assert _gpu_components()[stem].sm_count == EXPECTED_SMS[stem]


def test_every_gpu_component_has_an_expected_sm_count() -> None:
    assert set(_gpu_components()) == set(EXPECTED_SMS)


@pytest.mark.parametrize("path", PROFILE_FILES, ids=_ids(PROFILE_FILES))
def test_profile_validates_and_id_is_stem(path: Path) -> None:
    profile = load_profile(path)
    assert profile.id == path.stem


@pytest.mark.parametrize("path", TOPOLOGY_FILES, ids=_ids(TOPOLOGY_FILES))
def test_topology_validates(path: Path) -> None:
    topo = load_topology(path)
    assert topo.name == path.stem
    assert topo.gpus(), "a shipped topology has at least one GPU"


@pytest.mark.parametrize("path", TOPOLOGY_FILES, ids=_ids(TOPOLOGY_FILES))
def test_default_profile_exists(path: Path) -> None:
    topo = load_topology(path)
    assert (ROOT / SHIPPED_DIRS["profile"] / f"{topo.default_profile}.json").is_file()


@pytest.mark.parametrize("path", TOPOLOGY_FILES, ids=_ids(TOPOLOGY_FILES))
def test_topology_gpus_are_shipped_models_with_reference_sms(path: Path) -> None:
    topo = load_topology(path)
    components = _gpu_components()
    for g in topo.gpus():
        stems = [stem for stem, spec in components.items() if spec == g.model]
        assert stems, f"{g.id}: GPU model is not one of the shipped components"
        assert g.model.sm_count == EXPECTED_SMS[stems[0]]


@pytest.mark.parametrize("path", TOPOLOGY_FILES, ids=_ids(TOPOLOGY_FILES))
def test_gpu_hosts_are_on_the_same_node(path: Path) -> None:
    topo = load_topology(path)
    for g in topo.gpus():
        host = topo.device(g.host)
        assert isinstance(host, CPUDevice)
        assert host.node == g.node


def _graph(topo: Topology) -> nx.Graph:
    graph: nx.Graph = nx.Graph()
    graph.add_nodes_from(d.id for d in topo.devices)
    graph.add_edges_from((lk.a, lk.b) for lk in topo.links)
    # a unified-memory GPU reaches its host on the SoC, without a link
    graph.add_edges_from((g.id, g.host) for g in topo.gpus() if g.model.unified_memory)
    return graph


@pytest.mark.parametrize("path", TOPOLOGY_FILES, ids=_ids(TOPOLOGY_FILES))
def test_every_gpu_reaches_every_other_gpu(path: Path) -> None:
    """Through the link graph, without passing through a third GPU (GPUs do not forward)."""
    topo = load_topology(path)
    graph = _graph(topo)
    gpu_ids = [g.id for g in topo.gpus()]
    for src, dst in itertools.combinations(gpu_ids, 2):
        others = set(gpu_ids) - {src, dst}
        view = nx.subgraph_view(graph, filter_node=lambda n, others=others: n not in others)
        assert nx.has_path(view, src, dst), f"{src} cannot reach {dst}"


@pytest.mark.parametrize("path", TOPOLOGY_FILES, ids=_ids(TOPOLOGY_FILES))
def test_every_cpu_reaches_every_gpu_without_gpu_transit(path: Path) -> None:
    topo = load_topology(path)
    graph = _graph(topo)
    gpu_ids = {g.id for g in topo.gpus()}
    for c in topo.cpus():
        for g in gpu_ids:
            others = gpu_ids - {g}
            view = nx.subgraph_view(graph, filter_node=lambda n, others=others: n not in others)
            assert nx.has_path(view, c.id, g), f"{c.id} cannot reach {g}"


@pytest.mark.parametrize("path", TOPOLOGY_FILES, ids=_ids(TOPOLOGY_FILES))
def test_default_profile_covers_the_topology(path: Path) -> None:
    """The default profile has every value the topology's devices and links need."""
    topo = load_topology(path)
    profile: CalibrationProfile = load_profile(
        ROOT / SHIPPED_DIRS["profile"] / f"{topo.default_profile}.json"
    )
    for lk in topo.links:
        if lk.efficiency is None:
            assert lk.kind in profile.link_efficiency, f"no link_efficiency for {lk.kind}"
    for g in topo.gpus():
        assert g.model.memory_kind in profile.memory_efficiency
    for c in topo.cpus():
        assert c.memory.kind in profile.memory_efficiency, (
            f"no memory_efficiency for {c.memory.kind}"
        )
    for g in topo.gpus():
        assert isinstance(g, GPUDevice)
        runs = {InstructionPath.mma_sync, native_tensor_path(g.model.compute_capability)}
        for path_ in runs:
            for dtype in g.model.tensor_peak_TFLOPS:
                assert dtype in profile.tensor_efficiency[path_], (
                    f"no tensor_efficiency.{path_}.{dtype}"
                )


def _lc_fit_us(name: str) -> float:
    """A value of the jetson_tx2 profile's LC-1..3 fit document."""
    doc = json.loads((ROOT / "results/calibration/published/jetson_tx2/lc_fit.json").read_text())
    return float(next(m["stats"]["median"] for m in doc["measurements"] if m["name"] == name))


@pytest.mark.parametrize("path", PROFILE_FILES, ids=_ids(PROFILE_FILES))
def test_profile_launch_latency_matches_skip(path: Path) -> None:
    """launch_api_us + doorbell_to_start_us reproduces the SKIP Table V launch latency (SK-1..3),
    and kernel_floor_us the null-kernel duration (SK-4..6)."""
    expected = {
        "a100": (2.2605, 1.440),
        "h100_pcie": (2.3746, 1.2352),
        "h100_sxm": (2.3746, 1.2352),  # no SKIP row for SXM: the H100 PCIe values
        "gh200": (2.7716, 1.1712),
        # LC-1 (validation/fit_lc_tx2.py) scales the x86 launch call; the doorbell and the
        # null kernel stay the x86 + H100 PCIe priors
        "jetson_tx2": (_lc_fit_us("launch.launch_api_us") + 0.2746, 1.2352),
        # priors: the x86 + H100 PCIe values (nothing published on the Orin NX)
        "jetson_orin_nx": (2.3746, 1.2352),
    }
    profile = load_profile(path)
    # every shipped profile must say where its launch costs come from: extend the table
    assert profile.id in expected, f"no launch calibration source listed for {profile.id}"
    latency, floor = expected[profile.id]
    launch = profile.launch
    assert launch.launch_api_us.value + launch.doorbell_to_start_us.value == pytest.approx(
        latency, abs=2e-4
    )
    assert launch.kernel_floor_us.value == pytest.approx(floor, abs=1e-4)
