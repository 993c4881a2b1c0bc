"""Calibration profiles: the hardware-level efficiency and cost parameters of the models.

A profile is what `gpusim calibrate fit` writes from measurements (kernels_ref on a real GPU, or
published microbenchmarks); a scenario names one. Every value carries its provenance.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from gpusim.spec.base import Dtype, Fraction, Identifier, NonNegativeFloat, Spec
from gpusim.spec.hardware import MemoryKind
from gpusim.spec.topology import LinkKind


class Measured(Spec):
    """One calibrated value with where it came from."""

    value: NonNegativeFloat
    source: str = Field(
        min_length=1, description="Program and device, or publication, it came from."
    )
    uncertainty: NonNegativeFloat | None = Field(
        default=None, description="One standard error, same unit."
    )


class MeasuredFraction(Measured):
    """A calibrated fraction in (0, 1]."""

    value: Fraction


class InstructionPath(StrEnum):
    """Tensor-core instruction families; Hopper's legacy mma.sync path reaches far less of peak."""

    wgmma = "wgmma"
    mma_sync = "mma_sync"


def native_tensor_path(compute_capability: str) -> InstructionPath:
    """The tensor-core instruction family a GPU of this compute capability runs its GEMMs on:
    ``wgmma`` from 9.0 (Hopper), ``mma_sync`` before it (Ampere has no wgmma)."""
    major = int(compute_capability.split(".")[0])
    return InstructionPath.wgmma if major >= 9 else InstructionPath.mma_sync


class ShapeClass(StrEnum):
    """GEMM shape classes with distinct achievable efficiency."""

    large = "large"
    skinny = "skinny"


class LaunchCosts(Spec):
    """Host-side and launch-path costs (microseconds)."""

    launch_api_us: Measured = Field(description="Host time spent in cudaLaunchKernel per launch.")
    doorbell_to_start_us: Measured = Field(
        description="From the launch call returning to the kernel starting on an idle GPU."
    )
    kernel_floor_us: Measured = Field(description="Duration of an empty kernel on the GPU.")
    graph_launch_per_kernel_us: Measured = Field(
        description="Host cost per kernel node when launched through a CUDA graph."
    )
    framework_op_us: Measured = Field(
        description="Framework (e.g. PyTorch eager) cost per operator."
    )
    sync_return_us: Measured = Field(
        description="From the GPU going idle to a host sync returning."
    )


class DeviceCosts(Spec):
    """Device-side synchronisation and scheduling costs (persistent kernels, collectives)."""

    flag_handoff_ns: Measured = Field(
        description="One-way handoff of a flag between blocks on different SMs via global memory."
    )
    grid_barrier_us: Measured = Field(description="One device-wide barrier of a persistent grid.")
    task_latency_ns: Measured = Field(
        description="Persistent scheduler: from a task being ready to a processor block starting "
        "it (doorbell write, processor poll, 128-byte descriptor fetch)."
    )
    scheduler_ns_per_task: Measured = Field(
        description="Time the single scheduler warp spends per task (queue sweep, scan, doorbell): "
        "the serial part that caps the task rate."
    )
    subscriber_ns_per_task: Measured = Field(
        description="Subscriber time to decode one arrived packet into one task."
    )
    nccl_sms: Measured = Field(description="SMs an NCCL collective kernel occupies (channels).")
    nccl_setup_us: Measured = Field(
        description="Fixed cost of one NCCL collective kernel beyond its data movement."
    )


class SparseCosts(Spec):
    """Costs of Load-as-Sparse, Compute-as-Dense SpMM (Flash-LLM's Tiled-CSL kernel).

    The kernel streams the sparse weights from HBM in their compressed encoding, expands each
    tile into shared memory and multiplies it on the tensor cores as a dense tile. Its time is
    modelled as ``max(dense tensor time of the tile work, load time of the sparse bytes) +
    nnz * extract_ns_per_nonzero / SMs`` (see ``docs/calibration.md``).
    """

    extract_ns_per_nonzero: Measured = Field(
        description="Time one SM spends expanding one nonzero of the sparse encoding into the "
        "dense shared-memory tile, beyond what overlaps with the load and the MMA work."
    )


class CalibrationProfile(Spec):
    """All calibrated hardware-level parameters for one GPU/host kind."""

    id: Identifier
    description: str = ""
    link_efficiency: dict[LinkKind, MeasuredFraction] = Field(
        description="Achievable fraction of nameplate bandwidth per link kind."
    )
    memory_efficiency: dict[MemoryKind, MeasuredFraction] = Field(
        description="Achievable fraction of nameplate bandwidth per memory tier."
    )
    tensor_efficiency: dict[InstructionPath, dict[Dtype, dict[ShapeClass, MeasuredFraction]]] = (
        Field(
            description="Achieved fraction of dense tensor peak by instruction path, dtype, shape."
        )
    )
    cuda_core_efficiency: MeasuredFraction
    launch: LaunchCosts
    device: DeviceCosts
    sparse: SparseCosts | None = Field(
        default=None, description="SpMM (Load-as-Sparse, Compute-as-Dense) costs, when calibrated."
    )
