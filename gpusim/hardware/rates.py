"""A GPU's rates in SI units, from its spec and the calibration profile: the one place where
nameplate numbers meet achievable fractions."""

from __future__ import annotations

from dataclasses import dataclass

from gpusim.errors import SimulationError
from gpusim.spec.base import Dtype
from gpusim.spec.hardware import GPUSpec
from gpusim.spec.profile import CalibrationProfile, InstructionPath, native_tensor_path
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

    def matmul_path(self, path: InstructionPath, dtype: Dtype) -> InstructionPath:
        """The instruction path a matrix product asked to run on ``path`` runs on here:
        ``cuda_core`` when asked for, or when the GPU has no tensor-core peak for ``dtype`` (a
        Pascal GPU, or TF32 on a GPU whose tensor cores lack it); else ``mma_sync`` on a GPU
        without ``wgmma`` (compute capability below 9.0, such as the A100); else ``path``."""
        if path is InstructionPath.cuda_core or dtype not in self.spec.tensor_peak_TFLOPS:
            return InstructionPath.cuda_core
        if native_tensor_path(self.spec.compute_capability) is InstructionPath.mma_sync:
            return InstructionPath.mma_sync
        return path

    def matmul_peak_FLOPps(self, path: InstructionPath, dtype: Dtype) -> float:
        """Peak of the whole GPU for a matrix product on ``path`` (as :meth:`matmul_path`
        resolves it): the CUDA-core peak on ``cuda_core``, else the tensor-core peak. The error
        names both when the GPU has neither for ``dtype``."""
        if self.matmul_path(path, dtype) is not InstructionPath.cuda_core:
            return self.tensor_peak_FLOPps(dtype)
        if dtype not in self.spec.cuda_core_peak_TFLOPS and (
            dtype not in self.spec.tensor_peak_TFLOPS  # else: cuda_core asked for, not there
        ):
            have_tc = ", ".join(sorted(self.spec.tensor_peak_TFLOPS)) or "none"
            have_cc = ", ".join(sorted(self.spec.cuda_core_peak_TFLOPS)) or "none"
            raise SimulationError(
                f"GPU '{self.spec.name}' has neither a tensor-core nor a CUDA-core peak for "
                f"{dtype} (tensor cores: {have_tc}; CUDA cores: {have_cc})"
            )
        return self.cuda_core_peak_FLOPps(dtype)

    def matmul_efficiency(self, path: InstructionPath, dtype: Dtype) -> float:
        """Issue rate of a matrix product's FMA/MMA instructions as a fraction of
        :meth:`matmul_peak_FLOPps`: ``cuda_core_efficiency`` on the CUDA cores, else
        :meth:`tensor_efficiency`."""
        resolved = self.matmul_path(path, dtype)
        if resolved is InstructionPath.cuda_core:
            return self.profile.cuda_core_efficiency.value
        return self.tensor_efficiency(resolved, dtype)

    def tensor_efficiency(self, path: InstructionPath, dtype: Dtype) -> float:
        """MMA issue rate of this instruction path and dtype as a fraction of the tensor peak."""
        try:
            return self.profile.tensor_efficiency[path][dtype].value
        except KeyError:
            raise SimulationError(
                f"profile '{self.profile.id}' has no tensor_efficiency.{path}.{dtype}"
            ) from None


def gpu_rates(spec: GPUSpec, profile: CalibrationProfile) -> GPURates:
    """Combine a GPU spec with a profile. The achievable memory fraction is the profile's
    ``memory_efficiency`` of the GPU's ``memory_kind`` (hbm, or the unified pool's lpddr)."""
    kind = spec.memory_kind
    try:
        hbm_eff = profile.memory_efficiency[kind].value
    except KeyError:
        raise SimulationError(f"profile '{profile.id}' has no memory_efficiency.{kind}") from None
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
