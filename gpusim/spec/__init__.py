"""What is simulated: frozen, validated pydantic models with unit-suffixed fields."""

from gpusim.spec.base import Dtype, storage_bytes
from gpusim.spec.hardware import GPUSpec, HostCPUSpec, MemoryKind, MemoryTierSpec
from gpusim.spec.profile import (
    CalibrationProfile,
    InstructionPath,
    LaunchCosts,
    Measured,
    MeasuredFraction,
    ShapeClass,
)
from gpusim.spec.scenario import Fidelity, Options, ResolvedScenario, Scenario
from gpusim.spec.topology import (
    CPUDevice,
    Device,
    GPUDevice,
    LinkKind,
    LinkSpec,
    NICDevice,
    SwitchDevice,
    SwitchType,
    Topology,
)
from gpusim.spec.workload import (
    ElementwiseOp,
    GemmAllToAllWorkload,
    GemmOp,
    KernelChainWorkload,
    KernelOp,
    MemcpyOp,
    NullOp,
    Transfer,
    TransfersWorkload,
    Workload,
)

__all__ = [
    "CPUDevice",
    "CalibrationProfile",
    "Device",
    "Dtype",
    "ElementwiseOp",
    "Fidelity",
    "GPUDevice",
    "GPUSpec",
    "GemmAllToAllWorkload",
    "GemmOp",
    "HostCPUSpec",
    "InstructionPath",
    "KernelChainWorkload",
    "KernelOp",
    "LaunchCosts",
    "LinkKind",
    "LinkSpec",
    "Measured",
    "MeasuredFraction",
    "MemcpyOp",
    "MemoryKind",
    "MemoryTierSpec",
    "NICDevice",
    "NullOp",
    "Options",
    "ResolvedScenario",
    "Scenario",
    "ShapeClass",
    "SwitchDevice",
    "SwitchType",
    "Topology",
    "Transfer",
    "TransfersWorkload",
    "Workload",
    "storage_bytes",
]
