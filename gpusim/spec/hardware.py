"""Hardware component specs: GPUs, host CPUs, memory tiers."""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from gpusim.spec.base import Dtype, NonNegativeFloat, PositiveFloat, PositiveInt, Sourced
from gpusim.units import KiB

BlockResource = Literal["threads", "registers", "shared_memory"]
"""A per-block resource a launch can exceed."""


class MemoryKind(StrEnum):
    """Memory tiers the models distinguish. A GPU's memory is hbm, or lpddr / ddr when it is the
    unified memory of an SoC shared with the host CPU (:attr:`GPUSpec.memory_kind`)."""

    hbm = "hbm"
    ddr = "ddr"
    lpddr = "lpddr"
    storage = "storage"


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
        description="Dense tensor-core peak per dtype (no 2:4 sparsity); empty for a GPU without "
        "tensor cores (Pascal), whose matrix products run on its CUDA cores."
    )
    cuda_core_peak_TFLOPS: dict[Dtype, PositiveFloat] = Field(
        description="CUDA-core (non-tensor) peak per dtype."
    )
    memory_kind: MemoryKind = Field(
        default=MemoryKind.hbm,
        description="What the GPU's memory is. hbm: its own device memory. lpddr or ddr: unified "
        "memory of an SoC (Jetson), one DRAM pool the GPU shares with its host CPU; "
        "hbm_capacity_GB and hbm_bw_GBps then describe that shared pool, the topology requires "
        "the host CPU's memory to be the same pool, and the GPU's memory resource is the host's "
        "(gpusim/hardware/fabric.py). The profile's memory_efficiency of this kind applies.",
    )
    hbm_capacity_GB: PositiveFloat = Field(
        description="Capacity of the GPU's memory (the shared pool when memory_kind is unified)."
    )
    hbm_bw_GBps: PositiveFloat = Field(
        description="Nameplate bandwidth of the GPU's memory (the shared pool when memory_kind "
        "is unified)."
    )
    l2_MB: PositiveFloat
    l2_partitions: PositiveInt = Field(
        default=1,
        description="Partitions the L2 is built as (H100 and A100: 2); an SM reads the far "
        "partition's lines through the partition crossbar (docs/memory.md).",
    )
    shared_mem_bytes_per_clk: PositiveInt = Field(
        default=128,
        description="Shared-memory bandwidth of one SM per clock: 32 banks of 4 bytes.",
    )
    registers_per_sm: PositiveInt
    max_registers_per_thread: PositiveInt
    register_alloc_unit: PositiveInt = Field(
        description="Registers allocated per warp in units of this."
    )
    shared_mem_per_sm_KiB: PositiveFloat
    l1_shared_per_sm_KiB: PositiveFloat | None = Field(
        default=None,
        description="Unified L1 data cache and shared memory of one SM: what a kernel's shared "
        "memory leaves is its L1 (the gathers of CSR SpMM kernels hit there).",
    )
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

    @property
    def unified_memory(self) -> bool:
        """Whether the GPU shares its host CPU's DRAM (``memory_kind`` other than hbm)."""
        return self.memory_kind is not MemoryKind.hbm

    @model_validator(mode="after")
    def _consistent(self) -> GPUSpec:
        if self.memory_kind is MemoryKind.storage:
            raise ValueError("memory_kind storage is not a GPU memory (hbm, lpddr or ddr)")
        if self.shared_mem_per_block_KiB > self.shared_mem_per_sm_KiB:
            raise ValueError("shared_mem_per_block_KiB exceeds shared_mem_per_sm_KiB")
        if self.l1_shared_per_sm_KiB is not None and (
            self.l1_shared_per_sm_KiB < self.shared_mem_per_sm_KiB
        ):
            raise ValueError("l1_shared_per_sm_KiB is less than shared_mem_per_sm_KiB")
        if self.max_threads_per_block > self.max_threads_per_sm:
            raise ValueError("max_threads_per_block exceeds max_threads_per_sm")
        return self

    def launch_limit_problems(
        self, threads_per_block: int, registers_per_thread: int, shared_mem_per_block_bytes: int
    ) -> Iterator[tuple[BlockResource, str]]:
        """Why this GPU would refuse to launch a block of this shape: ``(resource, reason)`` for
        each per-block limit exceeded, in the order the occupancy calculation checks them
        (``gpusim.hardware.occupancy``, which raises the first). The registers of one block are
        allocated per warp (rounded up to ``register_alloc_unit``), its warps rounded up to a
        multiple of the sub-partitions, out of ``registers_per_sm``
        (``cudaDeviceProp.regsPerBlock`` on every 8.x/9.x part)."""
        threads, regs, smem_B = threads_per_block, registers_per_thread, shared_mem_per_block_bytes
        gpu = self.name
        if threads <= 0:
            yield "threads", f"threads_per_block must be positive, got {threads}"
        elif threads > self.max_threads_per_block:
            yield (
                "threads",
                (
                    f"threads_per_block {threads} exceeds the maximum of "
                    f"{self.max_threads_per_block} on {gpu}"
                ),
            )
        if regs <= 0:
            yield "registers", f"registers_per_thread must be positive, got {regs}"
        elif regs > self.max_registers_per_thread:
            yield (
                "registers",
                (
                    f"registers_per_thread {regs} exceeds the maximum of "
                    f"{self.max_registers_per_thread} on {gpu}"
                ),
            )
        smem_max_B = round(self.shared_mem_per_block_KiB * KiB)
        if smem_B < 0:
            yield "shared_memory", f"shared_mem_per_block_bytes must be non-negative, got {smem_B}"
        elif smem_B > smem_max_B:
            yield (
                "shared_memory",
                (
                    f"shared_mem_per_block_bytes {smem_B} exceeds the per-block maximum of "
                    f"{smem_max_B} B ({self.shared_mem_per_block_KiB} KiB) on {gpu}"
                ),
            )
        if threads <= 0 or regs <= 0:
            return
        subparts, unit = self.sm_subpartitions, self.register_alloc_unit
        warps_per_block = -(-threads // self.warp_size)
        regs_per_warp = unit * -(-(regs * self.warp_size) // unit)
        regs_per_block_hw = regs_per_warp * subparts * -(-warps_per_block // subparts)
        if regs_per_block_hw > self.registers_per_sm:
            yield (
                "registers",
                (
                    f"a block of {threads} threads at {regs} registers/thread needs "
                    f"{regs_per_block_hw} registers (warps rounded up to {subparts} "
                    f"sub-partitions), more than the {self.registers_per_sm} available per block "
                    f"on {gpu}"
                ),
            )


class HostCPUSpec(Sourced):
    """A host processor (one socket or one Grace die)."""

    name: str = Field(min_length=1)
    cores: PositiveInt
    clock_GHz: PositiveFloat
    isa: str = Field(min_length=1, description="x86_64 or aarch64.")


class MemoryTierSpec(Sourced):
    """A memory tier: capacity, nameplate bandwidth and access latency."""

    name: str = Field(min_length=1)
    kind: MemoryKind
    capacity_GB: PositiveFloat
    bw_GBps: PositiveFloat
    latency_ns: PositiveFloat
