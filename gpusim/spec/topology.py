"""Topology specs: the devices of a node (or cluster) and the links between them.

Component models (GPU, host CPU, memory tier) are given inline or by the name of a file under
``topologies/components/<kind>/``; the loader resolves names before validation.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, model_validator

from gpusim.spec.base import (
    Fraction,
    Identifier,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Sourced,
    Spec,
)
from gpusim.spec.hardware import GPUSpec, HostCPUSpec, MemoryKind, MemoryTierSpec


class LinkKind(StrEnum):
    """Physical link technologies. The calibration profile holds an achievable fraction per kind."""

    nvlink = "nvlink"
    pcie = "pcie"
    c2c = "c2c"
    infiniband = "infiniband"
    socket = "socket"  # CPU-to-CPU: UPI, AMD xGMI, Grace-to-Grace
    soc = "soc"  # a board or on-chip bus of an SoC (a Jetson's eMMC bus); nameplate = bus rate


class NcclTransport(StrEnum):
    """How NCCL moves data between two GPUs. ``auto`` chooses from the topology as NCCL does
    (``gpusim/hardware/transport.py``); the others force one transport inside a node (between
    nodes NCCL always uses ``net``): ``p2p`` GPU to GPU over NVLink or PCIe, ``shm`` through
    pinned host memory (both copies cross PCIe and the host's memory), ``net`` through a NIC."""

    auto = "auto"
    p2p = "p2p"
    shm = "shm"
    net = "net"


class GPUDevice(Spec):
    """A GPU, driven by the host CPU named in ``host``."""

    kind: Literal["gpu"] = "gpu"
    id: Identifier
    model: GPUSpec
    host: Identifier = Field(description="id of the cpu device whose threads launch its work.")
    node: NonNegativeInt = 0


class CPUDevice(Spec):
    """A host CPU socket (or Grace die) with its attached memory."""

    kind: Literal["cpu"] = "cpu"
    id: Identifier
    model: HostCPUSpec
    memory: MemoryTierSpec
    node: NonNegativeInt = 0


class StorageDevice(Spec):
    """A storage device (an NVMe SSD, an SoC's eMMC) whose ``memory`` (a tier of kind
    ``storage``) holds data that moves over its link: a weight tier of the speculative-decoding
    workload."""

    kind: Literal["storage"] = "storage"
    id: Identifier
    memory: MemoryTierSpec
    node: NonNegativeInt = 0

    @model_validator(mode="after")
    def _a_storage_tier(self) -> StorageDevice:
        if self.memory.kind != MemoryKind.storage:
            raise ValueError(
                f"memory '{self.memory.name}' is of kind {self.memory.kind}, not storage"
            )
        return self


class SwitchType(StrEnum):
    """What a switch forwards."""

    nvswitch = "nvswitch"
    pcie = "pcie"
    infiniband = "infiniband"


class SwitchDevice(Sourced):
    """A switch. Several NVSwitch chips that every GPU reaches with a share of its NVLinks are one
    switch device here (``chips`` records how many): traffic is striped across them, so one
    aggregate port per GPU is the faithful fluid model."""

    kind: Literal["switch"] = "switch"
    id: Identifier
    switch_type: SwitchType
    chips: PositiveInt = 1
    latency_ns: PositiveFloat
    node: NonNegativeInt = 0


class NICDevice(Sourced):
    """A network adapter (e.g. a ConnectX-7 400 Gb/s InfiniBand NIC)."""

    kind: Literal["nic"] = "nic"
    id: Identifier
    name: str = Field(min_length=1)
    node: NonNegativeInt = 0


Device = Annotated[
    GPUDevice | CPUDevice | SwitchDevice | NICDevice | StorageDevice, Field(discriminator="kind")
]


class LinkSpec(Sourced):
    """A full-duplex link between devices ``a`` and ``b``: each direction is its own resource."""

    kind: LinkKind
    a: Identifier
    b: Identifier
    bw_a_to_b_GBps: PositiveFloat = Field(description="Nameplate payload bandwidth a -> b.")
    bw_b_to_a_GBps: PositiveFloat | None = Field(
        default=None, description="Nameplate bandwidth b -> a; equal to a -> b when absent."
    )
    latency_ns: PositiveFloat
    efficiency: Fraction | None = Field(
        default=None,
        description="Achievable fraction of nameplate for this link; when absent the profile's "
        "value for the link kind applies.",
    )
    lanes: PositiveInt | None = Field(default=None, description="NVLinks or PCIe lanes bundled.")

    @property
    def bw_reverse_GBps(self) -> float:
        """Bandwidth b -> a (symmetric unless given)."""
        return self.bw_a_to_b_GBps if self.bw_b_to_a_GBps is None else self.bw_b_to_a_GBps


class Topology(Spec):
    """Devices and links of a node or cluster."""

    name: Identifier
    description: str = ""
    default_profile: Identifier = Field(
        description="Calibration profile used when a scenario names none."
    )
    devices: list[Device] = Field(min_length=1)
    links: list[LinkSpec] = Field(min_length=1)
    nccl_transport: NcclTransport = Field(
        default=NcclTransport.auto,
        description="NCCL transport inside a node: auto (from the topology, as NCCL chooses), "
        "or forced to p2p, shm or net (e.g. a machine running with NCCL_P2P_DISABLE=1).",
    )

    def gpus(self) -> list[GPUDevice]:
        """GPU devices in declaration order."""
        # found once per devices list (specs are frozen; a copy with other devices finds them
        # again): a sweep checks every point against its topology
        known = self.__dict__.get("_gpus_of")
        if known is None or known[0] is not self.devices:
            known = (self.devices, [d for d in self.devices if isinstance(d, GPUDevice)])
            self.__dict__["_gpus_of"] = known
        return list(known[1])

    def cpus(self) -> list[CPUDevice]:
        """CPU devices in declaration order."""
        return [d for d in self.devices if isinstance(d, CPUDevice)]

    def device(self, device_id: str) -> Device:
        """The device with this id (KeyError if none)."""
        for d in self.devices:
            if d.id == device_id:
                return d
        raise KeyError(device_id)
