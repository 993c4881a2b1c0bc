"""Hardware component specs: GPUs, host CPUs, memory tiers."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from gpusim.spec.base import Dtype, NonNegativeFloat, PositiveFloat, PositiveInt, Sourced


class GPUSpec(Sourced):
    """One GPU model: compute peaks, memory system and the per-SM resource limits that the
    occupancy calculation needs."""

    name: str = Field(min_length=1)
    compute_capability: str = Field(
        pattern=r"^[0-9]+\.[0-9]+$",
        description="CUDA compute capability (8.0 A100, 9.0 H100 and GH200): which tensor-core "
        "instruction paths the GPU has.",
    )
    sm_count: PositiveInt
    clock_MHz: PositiveFloat = Field(description="Clock behind the tensor-core peaks.")
    tensor_peak_TFLOPS: dict[Dtype, PositiveFloat] = Field(
        description="Dense tensor-core peak per dtype (no 2:4 sparsity)."
    )
    cuda_core_peak_TFLOPS: dict[Dtype, PositiveFloat] = Field(
        description="CUDA-core (non-tensor) peak per dtype."
    )
    hbm_capacity_GB: PositiveFloat
    hbm_bw_GBps: PositiveFloat = Field(description="Nameplate HBM bandwidth.")
    l2_MB: PositiveFloat
    registers_per_sm: PositiveInt
    max_registers_per_thread: PositiveInt
    register_alloc_unit: PositiveInt = Field(
        description="Registers allocated per warp in units of this."
    )
    shared_mem_per_sm_KiB: PositiveFloat
    shared_mem_per_block_KiB: PositiveFloat = Field(description="Opt-in maximum per block.")
    shared_mem_reserved_per_block_KiB: NonNegativeFloat = Field(
        description="Shared memory the system reserves for each resident block."
    )
    shared_mem_alloc_unit_bytes: PositiveInt
    max_threads_per_sm: PositiveInt
    max_threads_per_block: PositiveInt
    max_blocks_per_sm: PositiveInt
    sm_subpartitions: PositiveInt = Field(
        description="Warp schedulers (register file banks) per SM."
    )
    warp_size: PositiveInt = 32
    copy_engines: PositiveInt = Field(description="DMA engines for cudaMemcpyAsync.")

    @model_validator(mode="after")
    def _consistent(self) -> GPUSpec:
        if self.shared_mem_per_block_KiB > self.shared_mem_per_sm_KiB:
            raise ValueError("shared_mem_per_block_KiB exceeds shared_mem_per_sm_KiB")
        if self.max_threads_per_block > self.max_threads_per_sm:
            raise ValueError("max_threads_per_block exceeds max_threads_per_sm")
        return self


class HostCPUSpec(Sourced):
    """A host processor (one socket or one Grace die)."""

    name: str = Field(min_length=1)
    cores: PositiveInt
    clock_GHz: PositiveFloat
    isa: str = Field(min_length=1, description="x86_64 or aarch64.")


class MemoryKind(StrEnum):
    """Memory tiers the models distinguish."""

    hbm = "hbm"
    ddr = "ddr"
    lpddr = "lpddr"
    storage = "storage"


class MemoryTierSpec(Sourced):
    """A memory tier: capacity, nameplate bandwidth and access latency."""

    name: str = Field(min_length=1)
    kind: MemoryKind
    capacity_GB: PositiveFloat
    bw_GBps: PositiveFloat
    latency_ns: PositiveFloat
