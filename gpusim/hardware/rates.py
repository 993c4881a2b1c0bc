"""A GPU's rates in SI units, from its spec and the calibration profile: the one place where
nameplate numbers meet achievable fractions."""

from __future__ import annotations

from dataclasses import dataclass

from gpusim.errors import SimulationError
from gpusim.spec.base import Dtype
from gpusim.spec.hardware import GPUSpec, MemoryKind
from gpusim.spec.profile import CalibrationProfile, InstructionPath
from gpusim.units import GBps_to_Bps, MB_to_B, MHz_to_Hz, TFLOPS_to_FLOPps, ns_to_s, us_to_s


@dataclass(frozen=True)
class GPURates:
    """Peaks and achievable rates of one GPU model under one profile (SI units)."""

    spec: GPUSpec
    profile: CalibrationProfile
    sm_count: int
    hbm_nameplate_Bps: float
    hbm_achievable_Bps: float
    l2_bytes: float
    kernel_floor_s: float
    l2_near_Bps: float
    """Achievable L2 read bandwidth of the whole GPU while the data read fits one partition."""
    l2_whole_Bps: float
    """Achievable L2 read bandwidth over the whole L2 (reads crossing partitions)."""
    l2_hit_latency_s: float
    hbm_load_latency_s: float
    shared_mem_Bps_per_sm: float
    """Shared-memory bandwidth of one SM: ``shared_mem_bytes_per_clk x clock``."""

    def tensor_peak_FLOPps(self, dtype: Dtype) -> float:
        """Dense tensor-core peak of the whole GPU for ``dtype``."""
        try:
            return TFLOPS_to_FLOPps(self.spec.tensor_peak_TFLOPS[dtype])
        except KeyError:
            raise SimulationError(
                f"GPU '{self.spec.name}' has no tensor-core peak for {dtype}"
            ) from None

    def cuda_core_peak_FLOPps(self, dtype: Dtype) -> float:
        """CUDA-core peak of the whole GPU for ``dtype``."""
        try:
            return TFLOPS_to_FLOPps(self.spec.cuda_core_peak_TFLOPS[dtype])
        except KeyError:
            raise SimulationError(
                f"GPU '{self.spec.name}' has no CUDA-core peak for {dtype}"
            ) from None

    def tensor_efficiency(self, path: InstructionPath, dtype: Dtype) -> float:
        """MMA issue rate of this instruction path and dtype as a fraction of the tensor peak."""
        try:
            return self.profile.tensor_efficiency[path][dtype].value
        except KeyError:
            raise SimulationError(
                f"profile '{self.profile.id}' has no tensor_efficiency.{path}.{dtype}"
            ) from None


def gpu_rates(spec: GPUSpec, profile: CalibrationProfile) -> GPURates:
    """Combine a GPU spec with a profile."""
    try:
        hbm_eff = profile.memory_efficiency[MemoryKind.hbm].value
    except KeyError:
        raise SimulationError(f"profile '{profile.id}' has no memory_efficiency.hbm") from None
    nameplate = GBps_to_Bps(spec.hbm_bw_GBps)
    hierarchy = profile.memory_hierarchy
    return GPURates(
        spec=spec,
        profile=profile,
        sm_count=spec.sm_count,
        hbm_nameplate_Bps=nameplate,
        hbm_achievable_Bps=nameplate * hbm_eff,
        l2_bytes=MB_to_B(spec.l2_MB),
        kernel_floor_s=us_to_s(profile.launch.kernel_floor_us.value),
        l2_near_Bps=GBps_to_Bps(hierarchy.l2_near_read_GBps.value),
        l2_whole_Bps=GBps_to_Bps(hierarchy.l2_whole_read_GBps.value),
        l2_hit_latency_s=ns_to_s(hierarchy.l2_hit_latency_ns.value),
        hbm_load_latency_s=ns_to_s(hierarchy.hbm_load_latency_ns.value),
        shared_mem_Bps_per_sm=spec.shared_mem_bytes_per_clk * MHz_to_Hz(spec.clock_MHz),
    )
