"""A GPU's rates in SI units, from its spec and the calibration profile: the one place where
nameplate numbers meet achievable fractions."""

from __future__ import annotations

from dataclasses import dataclass

from gpusim.errors import SimulationError
from gpusim.spec.base import Dtype
from gpusim.spec.hardware import GPUSpec, MemoryKind
from gpusim.spec.profile import CalibrationProfile, InstructionPath, ShapeClass
from gpusim.units import GBps_to_Bps, MB_to_B, TFLOPS_to_FLOPps, us_to_s


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

    def tensor_efficiency(self, path: InstructionPath, dtype: Dtype, shape: ShapeClass) -> float:
        """Achieved fraction of the tensor peak for this instruction path, dtype and shape class."""
        try:
            return self.profile.tensor_efficiency[path][dtype][shape].value
        except KeyError:
            raise SimulationError(
                f"profile '{self.profile.id}' has no tensor_efficiency.{path}.{dtype}.{shape}"
            ) from None

    def tensor_rate_per_sm_FLOPps(
        self, path: InstructionPath, dtype: Dtype, shape: ShapeClass
    ) -> float:
        """Achievable tensor-core rate of one SM."""
        return (
            self.tensor_peak_FLOPps(dtype)
            * self.tensor_efficiency(path, dtype, shape)
            / self.sm_count
        )


def gpu_rates(spec: GPUSpec, profile: CalibrationProfile) -> GPURates:
    """Combine a GPU spec with a profile."""
    try:
        hbm_eff = profile.memory_efficiency[MemoryKind.hbm].value
    except KeyError:
        raise SimulationError(f"profile '{profile.id}' has no memory_efficiency.hbm") from None
    nameplate = GBps_to_Bps(spec.hbm_bw_GBps)
    return GPURates(
        spec=spec,
        profile=profile,
        sm_count=spec.sm_count,
        hbm_nameplate_Bps=nameplate,
        hbm_achievable_Bps=nameplate * hbm_eff,
        l2_bytes=MB_to_B(spec.l2_MB),
        kernel_floor_s=us_to_s(profile.launch.kernel_floor_us.value),
    )
