"""Scenario: a topology, a workload, a calibration profile and run options."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from gpusim.spec.base import Identifier, Spec
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.topology import Topology
from gpusim.spec.workload import Workload


class Fidelity(StrEnum):
    """``des``: discrete-event simulation with contention. ``analytic``: closed forms."""

    des = "des"
    analytic = "analytic"


class Options(Spec):
    """How to simulate."""

    seed: int = 0
    fidelity: Fidelity = Fidelity.des
    trace: bool = Field(default=False, description="Record a timeline (costs time and memory).")


class Scenario(Spec):
    """What to simulate. ``topology``, ``workload`` and ``profile`` are inline objects or
    references: a shipped name (see `gpusim list`) or a path relative to the scenario file."""

    name: Identifier
    description: str = ""
    topology: Topology | str
    workload: Workload | str
    profile: CalibrationProfile | str | None = Field(
        default=None, description="Calibration profile; the topology's default when absent."
    )
    options: Options = Options()


class ResolvedScenario(Spec):
    """A scenario with every reference replaced by the validated object it names."""

    name: Identifier
    description: str = ""
    topology: Topology
    workload: Workload
    profile: CalibrationProfile
    options: Options = Options()
