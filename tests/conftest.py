"""Shared test fixtures: an H100 SXM5 GPU spec and a calibration profile with made-up values.

Import the factories directly (``from conftest import make_h100_spec, make_profile``) to build
variants, or use the ``h100_spec`` / ``profile`` fixtures for the defaults.
"""

from __future__ import annotations

import os

# The tests run gpusim from its source, compiled engine or not (gpusim/native.py): coverage traces
# it, and tests subclass and patch engine classes. tests/test_native.py compares the compiled
# build's results with the source's. Set before gpusim is first imported.
os.environ["GPUSIM_PURE_PYTHON"] = "1"

import shutil
import subprocess
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from gpusim import native
from gpusim.spec.base import Dtype
from gpusim.spec.hardware import GPUSpec, HostCPUSpec, MemoryKind, MemoryTierSpec
from gpusim.spec.profile import (
    CalibrationProfile,
    DeviceCosts,
    HostRuntimeCosts,
    InstructionPath,
    LaunchCosts,
    Measured,
    MeasuredFraction,
    MemoryHierarchyCosts,
    NcclCostsSpec,
    NcclHardware,
    NcclProtocol,
)
from gpusim.spec.scenario import Fidelity, Options, ResolvedScenario
from gpusim.spec.topology import (
    CPUDevice,
    GPUDevice,
    LinkKind,
    LinkSpec,
    SwitchDevice,
    SwitchType,
    Topology,
)
from gpusim.spec.workload import Workload
from gpusim.workloads.moe.layer import LayerGeometry

FIXTURE = "test fixture"

# Property tests (tests/test_engine_properties.py) draw random instances. "dev" (a local run) draws
# new ones each run, which is how latent fast-path slips were found; "ci" draws the same ones on
# every run, so a clean clone's verdict does not depend on chance; "deep" hunts with 25 times as
# many. HYPOTHESIS_PROFILE picks one; without it, "ci" where CI is set and "dev" elsewhere.
settings.register_profile(
    "dev",
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("ci", settings.get_profile("dev"), derandomize=True, database=None)
settings.register_profile("deep", settings.get_profile("dev"), max_examples=2000)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)


def make_h100_spec(**overrides: Any) -> GPUSpec:
    """An H100 SXM5 (vendor numbers, hardware.md section 1); keyword arguments replace fields."""
    fields: dict[str, Any] = {
        "name": "H100-SXM5-test",
        "compute_capability": "9.0",
        "source": "tests/conftest.py: H100 SXM5 datasheet numbers (hardware.md section 1)",
        "sm_count": 132,
        "clock_MHz": 1830.0,
        "tensor_peak_TFLOPS": {
            Dtype.tf32: 494.7,
            Dtype.fp16: 989.4,
            Dtype.bf16: 989.4,
            Dtype.fp8: 1978.9,
        },
        "cuda_core_peak_TFLOPS": {Dtype.fp32: 66.9},
        "hbm_capacity_GB": 80.0,
        "hbm_bw_GBps": 3350.0,
        "l2_MB": 50.0,
        "registers_per_sm": 65536,
        "max_registers_per_thread": 255,
        "register_alloc_unit": 256,
        "shared_mem_per_sm_KiB": 228.0,
        "shared_mem_per_block_KiB": 227.0,
        "shared_mem_reserved_per_block_KiB": 1.0,
        "shared_mem_alloc_unit_bytes": 128,
        "max_threads_per_sm": 2048,
        "max_threads_per_block": 1024,
        "max_blocks_per_sm": 32,
        "sm_subpartitions": 4,
        "warp_size": 32,
        "copy_engines": 3,  # test fixture value
    }
    fields.update(overrides)
    return GPUSpec(**fields)


def _m(value: float) -> Measured:
    return Measured(value=value, source=FIXTURE)


def _f(value: float) -> MeasuredFraction:
    return MeasuredFraction(value=value, source=FIXTURE)


def make_profile(
    *,
    hbm_efficiency: float = 0.9,
    tensor_efficiency: float = 0.75,
    mma_sync_factor: float = 0.6,
    l2_near_GBps: float = 6000.0,
    l2_whole_GBps: float = 4000.0,
    l2_hit_latency_ns: float = 200.0,
    hbm_load_latency_ns: float = 300.0,
    cuda_core_efficiency: float = 0.7,
    kernel_floor_us: float = 2.0,
    link_efficiency: float = 0.8,
    launch_queue_depth: float = 1024.0,
) -> CalibrationProfile:
    """A calibration profile with every field set to a made-up test value (not a calibration).

    ``tensor_efficiency`` applies to ``wgmma`` for every dtype; ``mma_sync`` gets it times
    ``mma_sync_factor``.
    """
    tensor: dict[InstructionPath, dict[Dtype, MeasuredFraction]] = {}
    for path, factor in ((InstructionPath.wgmma, 1.0), (InstructionPath.mma_sync, mma_sync_factor)):
        tensor[path] = {dtype: _f(tensor_efficiency * factor) for dtype in Dtype}
    return CalibrationProfile(
        id="test-profile",
        description="made-up values for tests",
        link_efficiency={kind: _f(link_efficiency) for kind in LinkKind},
        memory_efficiency={kind: _f(hbm_efficiency) for kind in MemoryKind},
        tensor_efficiency=tensor,
        memory_hierarchy=MemoryHierarchyCosts(
            l2_near_read_GBps=_m(l2_near_GBps),
            l2_whole_read_GBps=_m(l2_whole_GBps),
            l2_hit_latency_ns=_m(l2_hit_latency_ns),
            hbm_load_latency_ns=_m(hbm_load_latency_ns),
        ),
        cuda_core_efficiency=_f(cuda_core_efficiency),
        launch=LaunchCosts(
            launch_api_us=_m(2.0),
            doorbell_to_start_us=_m(1.0),
            kernel_floor_us=_m(kernel_floor_us),
            graph_launch_per_kernel_us=_m(1.0),
            framework_op_us=_m(5.0),
            sync_return_us=_m(1.0),
        ),
        host=HostRuntimeCosts(
            reduction_op_us=_m(6.0),
            indexing_op_us=_m(7.0),
            view_op_us=_m(4.0),
            autograd_op_us=_m(1.5),
            python_step_us=_m(0.5),
            cublas_call_us=_m(3.0),
            collective_call_us=_m(6.0),
            graph_launch_us=_m(3.0),
            launch_queue_depth=_m(launch_queue_depth),
        ),
        device=DeviceCosts(
            flag_handoff_ns=_m(200.0),
            grid_barrier_us=_m(2.0),
            task_latency_ns=_m(500.0),
            scheduler_ns_per_task=_m(50.0),
            subscriber_ns_per_task=_m(20.0),
            nccl_sms=_m(16.0),
        ),
        nccl=NcclCostsSpec(
            base_latency_us={
                NcclProtocol.ll: _m(5.0),
                NcclProtocol.ll128: _m(10.0),
                NcclProtocol.simple: _m(8.0),
            },
            hop_latency_us={
                NcclHardware.nvlink: {
                    NcclProtocol.ll: _m(0.5),
                    NcclProtocol.ll128: _m(1.5),
                    NcclProtocol.simple: _m(3.0),
                },
                NcclHardware.pcie: {
                    NcclProtocol.ll: _m(1.0),
                    NcclProtocol.ll128: _m(2.0),
                    NcclProtocol.simple: _m(5.0),
                },
                NcclHardware.net: {
                    NcclProtocol.ll: _m(3.0),
                    NcclProtocol.ll128: _m(4.0),
                    NcclProtocol.simple: _m(10.0),
                },
            },
            bandwidth_fraction={
                NcclProtocol.ll: _f(0.5),
                NcclProtocol.ll128: _f(0.9),
                NcclProtocol.simple: _f(1.0),
            },
            p2p_ll_threshold_B=_m(16384.0),
            host_call_us=_m(2.0),
        ),
    )


@pytest.fixture
def h100_spec() -> GPUSpec:
    """The default ``make_h100_spec()``."""
    return make_h100_spec()


@pytest.fixture
def profile() -> CalibrationProfile:
    """The default ``make_profile()``."""
    return make_profile()


def make_star_topology(
    n_gpus: int = 2,
    *,
    link_GBps: float = 450.0,
    link_latency_ns: float = 500.0,
    switch_latency_ns: float = 100.0,
    gpu: GPUSpec | None = None,
) -> Topology:
    """``n_gpus`` GPUs on one NVSwitch-like switch plus one host CPU on PCIe (test fixture)."""
    model = gpu or make_h100_spec()
    cpu = CPUDevice(
        id="cpu0",
        model=HostCPUSpec(name="test-cpu", cores=32, clock_GHz=3.0, isa="x86_64", source=FIXTURE),
        memory=MemoryTierSpec(
            name="test-ddr",
            kind=MemoryKind.ddr,
            capacity_GB=512,
            bw_GBps=300,
            latency_ns=100,
            source=FIXTURE,
        ),
    )
    switch = SwitchDevice(
        id="sw", switch_type=SwitchType.nvswitch, latency_ns=switch_latency_ns, source=FIXTURE
    )
    gpus = [GPUDevice(id=f"gpu{i}", model=model, host="cpu0") for i in range(n_gpus)]
    links = [
        LinkSpec(
            kind=LinkKind.nvlink,
            a=g.id,
            b="sw",
            bw_a_to_b_GBps=link_GBps,
            latency_ns=link_latency_ns,
            source=FIXTURE,
        )
        for g in gpus
    ] + [
        LinkSpec(
            kind=LinkKind.pcie,
            a=g.id,
            b="cpu0",
            bw_a_to_b_GBps=63.0,
            latency_ns=1000.0,
            source=FIXTURE,
        )
        for g in gpus
    ]
    return Topology(
        name=f"star{n_gpus}",
        default_profile="test-profile",
        devices=[cpu, switch, *gpus],
        links=links,
    )


def make_scenario(
    workload: Workload,
    *,
    topology: Topology | None = None,
    profile: CalibrationProfile | None = None,
    fidelity: Fidelity = Fidelity.des,
    seed: int = 0,
    trace: bool = False,
) -> ResolvedScenario:
    """A resolved scenario around ``workload`` on the star topology by default."""
    return ResolvedScenario(
        name="test",
        topology=topology or make_star_topology(),
        workload=workload,
        profile=profile or make_profile(),
        options=Options(seed=seed, fidelity=fidelity, trace=trace),
    )


@cache
def cuda_device_present() -> bool:
    """Whether ``nvidia-smi -L`` lists a GPU on this machine."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and "GPU" in done.stdout


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` are skipped on machines without a CUDA device."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu") is not None]
    if gpu_tests and not cuda_device_present():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in gpu_tests:
            item.add_marker(skip)


def make_geometry(
    n_gpus: int,
    tokens_per_gpu: int,
    hidden: int,
    experts: int,
    top_k: int,
    *,
    capacity_factor: float | None = None,
    dtype: Dtype = Dtype.fp16,
) -> LayerGeometry:
    """An MoE layer on ``gpu0`` .. ``gpu{n_gpus-1}`` with a square FFN (intermediate = hidden)."""
    return LayerGeometry(
        gpus=[f"gpu{i}" for i in range(n_gpus)],
        tokens_per_gpu=tokens_per_gpu,
        hidden=hidden,
        intermediate=hidden,
        experts=experts,
        top_k=top_k,
        capacity_factor=capacity_factor,
        dtype=dtype,
    )


def finished_points(results: Path) -> dict[str, dict[str, Any]]:
    """The finished points stored in a sweep results folder (read afresh), by scenario hash."""
    from gpusim.sweep import ResultStore

    return ResultStore(results).results()


def wait_for_points(results: Path, count: int, timeout_s: float = 60) -> None:
    """Wait until a running sweep has stored ``count`` finished points."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(finished_points(results)) < count:
        time.sleep(0.05)
    assert len(finished_points(results)) >= count, "the sweep made no progress"


def require_built(modules: Sequence[str], what: str) -> None:
    """Skip where ``modules`` (of gpusim/native.py's compiled or C modules) would not run as the
    install built them without GPUSIM_PURE_PYTHON (not built, or edited since); fail in CI,
    which builds them: the tests that compare a build with its source need the build."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(native.PURE_ENV)
        reason = native.source_reason(modules)
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI builds {what}, yet it would not run: {reason}")
        pytest.skip(f"{what} would not run: {reason}")
