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
