"""Scenario: a topology, a workload, a calibration profile and run options."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from functools import cached_property

from pydantic import Field

from gpusim.spec.base import FileName, NonNegativeInt, Spec
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.topology import NcclTransport, Topology
from gpusim.spec.workload import Workload


class Fidelity(StrEnum):
    """``des``: discrete-event simulation with contention. ``analytic``: closed forms."""

    des = "des"
    analytic = "analytic"


class Options(Spec):
    """How to simulate."""

    seed: NonNegativeInt = 0
    fidelity: Fidelity = Fidelity.des
    trace: bool = Field(default=False, description="Record a timeline (costs time and memory).")
    nccl_transport: NcclTransport | None = Field(
        default=None,
        description="Force NCCL's transport inside a node (auto | p2p | shm | net), overriding "
        "the topology's nccl_transport; absent: the topology's.",
    )


class Scenario(Spec):
    """What to simulate. ``topology``, ``workload`` and ``profile`` are inline objects or
    references: a shipped name (see `gpusim list`) or a path relative to the scenario file."""

    name: FileName
    description: str = ""
    topology: Topology | str
    workload: Workload | str
    profile: CalibrationProfile | str | None = Field(
        default=None, description="Calibration profile; the topology's default when absent."
    )
    options: Options = Options()


class ResolvedScenario(Spec):
    """A scenario with every reference replaced by the validated object it names."""

    @cached_property
    def content_hash(self) -> str:
        """Hash of this scenario's JSON: equal content, equal hash, on any machine (computed
        once per object and pickled with it). Fields serialise in spec order and mappings in
        their input order, so two equal scenarios written with differently ordered keys may
        hash apart: a sweep then recomputes a point, it never mixes two results up."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]

    name: FileName
    description: str = ""
    topology: Topology
    workload: Workload
    profile: CalibrationProfile
    options: Options = Options()
