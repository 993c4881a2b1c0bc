"""What is simulated: frozen, validated pydantic models with unit-suffixed fields.

The names below are imported on first use (PEP 562), so that importing one module of the package
(``gpusim.spec.refs`` for ``gpusim list``) does not load every model."""

from typing import TYPE_CHECKING

from gpusim.lazy import lazy_exports

if TYPE_CHECKING:
    from gpusim.spec.base import Dtype, storage_bytes
    from gpusim.spec.hardware import GPUSpec, HostCPUSpec, MemoryKind, MemoryTierSpec
    from gpusim.spec.profile import (
        CalibrationProfile,
        DeviceCosts,
        HostRuntimeCosts,
        InstructionPath,
        LaunchCosts,
        Measured,
        MeasuredFraction,
    )
    from gpusim.spec.scenario import Fidelity, Options, ResolvedScenario, Scenario
    from gpusim.spec.topology import (
        CPUDevice,
        Device,
        GPUDevice,
        LinkKind,
        LinkSpec,
        NICDevice,
        StorageDevice,
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

_HOMES = {
    "CPUDevice": "gpusim.spec.topology",
    "CalibrationProfile": "gpusim.spec.profile",
    "Device": "gpusim.spec.topology",
    "DeviceCosts": "gpusim.spec.profile",
    "Dtype": "gpusim.spec.base",
    "ElementwiseOp": "gpusim.spec.workload",
    "Fidelity": "gpusim.spec.scenario",
    "GPUDevice": "gpusim.spec.topology",
    "GPUSpec": "gpusim.spec.hardware",
    "GemmAllToAllWorkload": "gpusim.spec.workload",
    "GemmOp": "gpusim.spec.workload",
    "HostCPUSpec": "gpusim.spec.hardware",
    "HostRuntimeCosts": "gpusim.spec.profile",
    "InstructionPath": "gpusim.spec.profile",
    "KernelChainWorkload": "gpusim.spec.workload",
    "KernelOp": "gpusim.spec.workload",
    "LaunchCosts": "gpusim.spec.profile",
    "LinkKind": "gpusim.spec.topology",
    "LinkSpec": "gpusim.spec.topology",
    "Measured": "gpusim.spec.profile",
    "MeasuredFraction": "gpusim.spec.profile",
    "MemcpyOp": "gpusim.spec.workload",
    "MemoryKind": "gpusim.spec.hardware",
    "MemoryTierSpec": "gpusim.spec.hardware",
    "NICDevice": "gpusim.spec.topology",
    "NullOp": "gpusim.spec.workload",
    "Options": "gpusim.spec.scenario",
    "ResolvedScenario": "gpusim.spec.scenario",
    "Scenario": "gpusim.spec.scenario",
    "StorageDevice": "gpusim.spec.topology",
    "SwitchDevice": "gpusim.spec.topology",
    "SwitchType": "gpusim.spec.topology",
    "Topology": "gpusim.spec.topology",
    "Transfer": "gpusim.spec.workload",
    "TransfersWorkload": "gpusim.spec.workload",
    "Workload": "gpusim.spec.workload",
    "storage_bytes": "gpusim.spec.base",
}
"""Public name -> the module that defines it."""

__all__ = [
    "CPUDevice",
    "CalibrationProfile",
    "Device",
    "DeviceCosts",
    "Dtype",
    "ElementwiseOp",
    "Fidelity",
    "GPUDevice",
    "GPUSpec",
    "GemmAllToAllWorkload",
    "GemmOp",
    "HostCPUSpec",
    "HostRuntimeCosts",
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
    "StorageDevice",
    "SwitchDevice",
    "SwitchType",
    "Topology",
    "Transfer",
    "TransfersWorkload",
    "Workload",
    "storage_bytes",
]

__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
