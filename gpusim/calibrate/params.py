"""The calibration profile's parameters as flat paths.

Every value of a :class:`~gpusim.spec.profile.CalibrationProfile` has a dotted path, the name the
fitter, the assumptions document and ``gpusim calibrate show`` use for it:
``launch.kernel_floor_us``, ``link_efficiency.nvlink``, ``tensor_efficiency.wgmma.fp16``,
``sparse.extract_cycles_per_nonzero``. This module lists the paths, says which are fractions of a
nameplate (bounded to (0, 1]) and which are costs (>= 0), gives their units, and converts between a
flat ``{path: Measured}`` mapping and a profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from pydantic import BaseModel

from gpusim.spec.base import Dtype
from gpusim.spec.hardware import MemoryKind
from gpusim.spec.profile import (
    TENSOR_PATHS,
    CalibrationProfile,
    DeviceCosts,
    HostRuntimeCosts,
    LaunchCosts,
    Measured,
    MemoryHierarchyCosts,
    NcclCostsSpec,
    NcclHardware,
    NcclProtocol,
    SparseCosts,
    StorageIOCosts,
)
from gpusim.spec.topology import LinkKind

_FRACTION_ROOTS = ("link_efficiency", "memory_efficiency", "tensor_efficiency")
_COST_SECTIONS: dict[
    str,
    type[
        LaunchCosts
        | HostRuntimeCosts
        | DeviceCosts
        | MemoryHierarchyCosts
        | NcclCostsSpec
        | SparseCosts
        | StorageIOCosts
    ],
] = {
    "memory_hierarchy": MemoryHierarchyCosts,
    "launch": LaunchCosts,
    "host": HostRuntimeCosts,
    "device": DeviceCosts,
    "nccl": NcclCostsSpec,
    "sparse": SparseCosts,
    "storage_io": StorageIOCosts,
}
_NCCL_FRACTIONS = "nccl.bandwidth_fraction."


def _nccl_paths() -> list[str]:
    """The NCCL section's paths: its per-protocol tables expanded."""
    protocols = [p.value for p in NcclProtocol]
    paths = [f"nccl.base_latency_us.{p}" for p in protocols]
    paths += [f"nccl.hop_latency_us.{h.value}.{p}" for h in NcclHardware for p in protocols]
    paths += [f"{_NCCL_FRACTIONS}{p}" for p in protocols]
    return [*paths, "nccl.p2p_ll_threshold_B", "nccl.host_call_us"]


@cache
def all_paths() -> tuple[str, ...]:
    """Every parameter path a profile can hold, in the order profiles are written."""
    paths = [f"link_efficiency.{k.value}" for k in LinkKind]
    paths += [f"memory_efficiency.{k.value}" for k in MemoryKind]
    paths += [f"tensor_efficiency.{p.value}.{d.value}" for p in TENSOR_PATHS for d in Dtype]
    paths.append("cuda_core_efficiency")
    for section, model in _COST_SECTIONS.items():
        if section == "nccl":
            paths += _nccl_paths()
        else:
            paths += [f"{section}.{name}" for name in model.model_fields]
    return tuple(paths)


def is_known(path: str) -> bool:
    """Whether ``path`` names a profile parameter."""
    return path in _order()


@cache
def _order() -> dict[str, int]:
    return {p: i for i, p in enumerate(all_paths())}


def order_key(path: str) -> int:
    """Position of ``path`` in :func:`all_paths` (for sorting)."""
    return _order()[path]


def is_fraction(path: str) -> bool:
    """Fractions of a nameplate live in (0, 1]; every other parameter is a cost >= 0."""
    return (
        path.split(".")[0] in _FRACTION_ROOTS
        or path == "cuda_core_efficiency"
        or path.startswith(_NCCL_FRACTIONS)
    )


def unit_of(path: str) -> str:
    """Unit of a parameter, read from its name (fractions: ``fraction``)."""
    if is_fraction(path):
        return "fraction"
    tokens = [t for part in path.split(".")[1:] for t in part.split("_")]
    if tokens[-3:] == ["us", "per", "MB"]:
        return "us/MB"
    if "us" in tokens:
        return "us"
    if "ns" in tokens:
        return "ns"
    if tokens[-1] == "GBps":
        return "GB/s"
    if tokens[-1] == "sms":
        return "SMs"
    if tokens[-1] == "B":
        return "B"
    if "cycles" in tokens:
        return "cycles"
    return ""


def always_required() -> tuple[str, ...]:
    """Parameters every profile must hold whatever hardware it describes."""
    return tuple(
        p
        for p in all_paths()
        if p.split(".")[0]
        in ("cuda_core_efficiency", "memory_hierarchy", "launch", "host", "device", "nccl")
    )


def sections_complete(paths: set[str]) -> list[str]:
    """Paths missing from an optional section (``sparse``, ``storage_io``) of which some paths
    are present."""
    missing: list[str] = []
    for section in ("sparse", "storage_io"):
        fields = [f"{section}.{n}" for n in _COST_SECTIONS[section].model_fields]
        if any(f in paths for f in fields):
            missing += [f for f in fields if f not in paths]
    return missing


def build_profile(
    profile_id: str, description: str, values: Mapping[str, Measured]
) -> CalibrationProfile:
    """A validated profile from a flat ``{path: Measured}`` mapping (written in path order)."""
    raw: dict[str, Any] = {"id": profile_id, "description": description}
    for path in sorted(values, key=order_key):
        node = raw
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = values[path].model_dump(exclude_none=True)
    for section in _FRACTION_ROOTS:
        raw.setdefault(section, {})
    return CalibrationProfile.model_validate(raw)


def flatten(profile: CalibrationProfile) -> dict[str, Measured]:
    """The profile's values by path, in path order."""
    out: dict[str, Measured] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, Measured):
            out[prefix] = node
        elif isinstance(node, Mapping):
            for key, child in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), child)
        elif isinstance(node, BaseModel):
            for name in type(node).model_fields:
                walk(f"{prefix}.{name}" if prefix else name, getattr(node, name))

    for name in _FRACTION_ROOTS:
        walk(name, getattr(profile, name))
    walk("cuda_core_efficiency", profile.cuda_core_efficiency)
    for name in _COST_SECTIONS:
        walk(name, getattr(profile, name))
    return {p: out[p] for p in sorted(out, key=order_key)}


def profile_document(profile: CalibrationProfile) -> dict[str, Any]:
    """The JSON document of a profile as shipped: absent values (no uncertainty, no ``sparse``
    section) are left out rather than written as null."""
    return profile.model_dump(mode="json", exclude_none=True)
