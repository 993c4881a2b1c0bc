"""The workload registry: every workload family, and the one protocol they all follow.

A family is a ``kind`` (the tag of its spec in the :data:`~gpusim.spec.workload.Workload`
union), its spec class, the spec's semantic check against a topology (a ``check`` method on the
spec class, so the loader in ``spec/`` runs it without importing this layer), and its two models
with one keyword signature each:

- ``des(node, workload, *, seed) -> Outcome``: the discrete-event model on a built node;
- ``analytic(topology, profile, workload, *, seed) -> Outcome``: the closed form;

and the metric names its runs report, declared: ``metric_names(workload, topology, fidelity)``
(a topology because a name can depend on the GPUs a workload runs on, which default to the
topology's; a fidelity for the DES-only diagnostics). Sweeps check the metrics they name against
these without running anything; the contract test holds every model to them exactly.

The seed is the scenario's ``options.seed``, passed the same way to both fidelities and every
family; a family that draws random numbers makes its generators from it (one that draws none
accepts and ignores it). Nothing else carries randomness: the engine's ``Simulation`` has no
generator. Adding a family: ``docs/adding_a_workload.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar, get_args

from gpusim.hardware.node import Node
from gpusim.result import Outcome
from gpusim.spec.base import Spec
from gpusim.spec.llm import LlmInferenceWorkload
from gpusim.spec.moe import MoELayerWorkload, RouterStepsWorkload
from gpusim.spec.problems import Problem
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.scenario import Fidelity
from gpusim.spec.speculative import SpeculativeDecodingWorkload
from gpusim.spec.topology import Topology
from gpusim.spec.workload import (
    GemmAllToAllWorkload,
    KernelChainWorkload,
    TransfersWorkload,
    Workload,
)
from gpusim.workloads import (
    gemm_alltoall,
    kernel_chain,
    llm,
    moe,
    router_steps,
    speculative,
    transfers,
)

W = TypeVar("W", bound=Spec)
W_contra = TypeVar("W_contra", bound=Spec, contravariant=True)


class DesModel(Protocol[W_contra]):
    """A family's discrete-event model."""

    def __call__(self, node: Node, workload: W_contra, /, *, seed: int) -> Outcome: ...


class AnalyticModel(Protocol[W_contra]):
    """A family's closed-form model."""

    def __call__(
        self, topology: Topology, profile: CalibrationProfile, workload: W_contra, /, *, seed: int
    ) -> Outcome: ...


class MetricNames(Protocol[W_contra]):
    """A family's declared metric names: exactly the keys of ``Outcome.metrics`` that a run of
    ``workload`` on ``topology`` at ``fidelity`` reports."""

    def __call__(
        self, workload: W_contra, topology: Topology, fidelity: Fidelity, /
    ) -> frozenset[str]: ...


def fixed_metrics(names: frozenset[str]) -> MetricNames[Spec]:
    """The declaration of a family whose metric names depend on nothing: ``names``."""

    def metric_names(workload: Spec, topology: Topology, fidelity: Fidelity, /) -> frozenset[str]:
        return names

    return metric_names


Check = Callable[[W, Topology], Iterator[Problem]]


@dataclass(frozen=True)
class WorkloadFamily(Generic[W]):
    """One workload family: its tag, its spec class, the spec's semantic check (the spec class's
    ``check`` method, which the loader also calls), its two models and its metric names.

    Both models report the same metric names and per-GPU row names, except the
    ``des_diagnostics``: names (of metrics or per-GPU values) that only the DES reports because
    they describe how the event engine ran (batching, shortcuts taken), not the system simulated.
    """

    kind: str
    spec: type[W]
    check: Check[W]
    des: DesModel[W]
    analytic: AnalyticModel[W]
    metric_names: MetricNames[W]
    des_diagnostics: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        kind_field = self.spec.model_fields.get("kind")
        declared = kind_field.default if kind_field is not None else None
        if declared != self.kind:
            raise TypeError(
                f"family '{self.kind}': {self.spec.__name__}.kind defaults to {declared!r}"
            )
        if self.check is not getattr(self.spec, "check", None):
            raise TypeError(
                f"family '{self.kind}': check must be {self.spec.__name__}.check, the method "
                "the loader runs"
            )


def _families(*families: WorkloadFamily[Any]) -> Mapping[str, WorkloadFamily[Any]]:
    out: dict[str, WorkloadFamily[Any]] = {}
    for family in families:
        if family.kind in out:
            raise TypeError(f"workload kind '{family.kind}' registered twice")
        out[family.kind] = family
    return MappingProxyType(out)


FAMILIES: Mapping[str, WorkloadFamily[Any]] = _families(
    WorkloadFamily(
        kind="gemm_alltoall",
        spec=GemmAllToAllWorkload,
        check=GemmAllToAllWorkload.check,
        des=gemm_alltoall.des,
        analytic=gemm_alltoall.analytic,
        metric_names=fixed_metrics(gemm_alltoall.METRICS),
    ),
    WorkloadFamily(
        kind="kernel_chain",
        spec=KernelChainWorkload,
        check=KernelChainWorkload.check,
        des=kernel_chain.des,
        analytic=kernel_chain.analytic,
        metric_names=fixed_metrics(kernel_chain.METRICS),
    ),
    WorkloadFamily(
        kind="transfers",
        spec=TransfersWorkload,
        check=TransfersWorkload.check,
        des=transfers.des,
        analytic=transfers.analytic,
        metric_names=fixed_metrics(transfers.METRICS),
    ),
    WorkloadFamily(
        kind="moe_layer",
        spec=MoELayerWorkload,
        check=MoELayerWorkload.check,
        des=moe.des,
        analytic=moe.analytic,
        metric_names=moe.metric_names,
        # FlashMoE's DES: transfers that took the fluid network instead of the uncontended
        # shortcut, and task events after batching (FlashMoEStrategy.task_batch)
        des_diagnostics=frozenset({"fluid_transfer_fraction", "task_batches"}),
    ),
    WorkloadFamily(
        kind="router_steps",
        spec=RouterStepsWorkload,
        check=RouterStepsWorkload.check,
        des=router_steps.des,
        analytic=router_steps.analytic,
        metric_names=router_steps.metric_names,
    ),
    WorkloadFamily(
        kind="llm_inference",
        spec=LlmInferenceWorkload,
        check=LlmInferenceWorkload.check,
        des=llm.des,
        analytic=llm.analytic,
        metric_names=llm.metric_names,
    ),
    WorkloadFamily(
        kind="speculative_decoding",
        spec=SpeculativeDecodingWorkload,
        check=SpeculativeDecodingWorkload.check,
        des=speculative.des,
        analytic=speculative.analytic,
        metric_names=fixed_metrics(speculative.METRICS),
    ),
)
"""Every registered family by kind."""


def workload_spec_classes() -> tuple[type[Spec], ...]:
    """The members of the :data:`~gpusim.spec.workload.Workload` union, in its order."""
    union = get_args(Workload)[0]
    return tuple(get_args(union))


def family_of(workload: Spec) -> WorkloadFamily[Any]:
    """The family of a validated workload spec."""
    family = FAMILIES.get(str(getattr(workload, "kind", "")))
    if family is None or not isinstance(workload, family.spec):
        raise TypeError(f"no workload family for {type(workload).__name__}")
    return family


def run_des(node: Node, workload: Workload, *, seed: int) -> Outcome:
    """Simulate ``workload`` on a built node with the discrete-event engine."""
    return family_of(workload).des(node, workload, seed=seed)


def run_analytic(
    topology: Topology, profile: CalibrationProfile, workload: Workload, *, seed: int
) -> Outcome:
    """Evaluate ``workload`` in closed form."""
    return family_of(workload).analytic(topology, profile, workload, seed=seed)


__all__ = [
    "FAMILIES",
    "AnalyticModel",
    "Check",
    "DesModel",
    "MetricNames",
    "WorkloadFamily",
    "family_of",
    "fixed_metrics",
    "run_analytic",
    "run_des",
    "workload_spec_classes",
]
