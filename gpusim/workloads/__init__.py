"""The systems under study, built from the execution paths. One module per workload kind, each
with ``des(node, workload)`` and ``analytic(topology, profile, workload)`` (plus ``seed`` where
the workload draws random numbers)."""

from __future__ import annotations

from gpusim.hardware.node import Node
from gpusim.result import Outcome
from gpusim.spec.moe import MoELayerWorkload, RouterStepsWorkload
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.topology import Topology
from gpusim.spec.workload import (
    GemmAllToAllWorkload,
    KernelChainWorkload,
    TransfersWorkload,
    Workload,
)
from gpusim.workloads import gemm_alltoall, kernel_chain, moe, router_steps, transfers


def run_des(node: Node, workload: Workload) -> Outcome:
    """Simulate ``workload`` on a built node with the discrete-event engine."""
    if isinstance(workload, GemmAllToAllWorkload):
        return gemm_alltoall.des(node, workload)
    if isinstance(workload, KernelChainWorkload):
        return kernel_chain.des(node, workload)
    if isinstance(workload, TransfersWorkload):
        return transfers.des(node, workload)
    if isinstance(workload, MoELayerWorkload):
        return moe.des(node, workload, seed=node.sim.seed)
    if isinstance(workload, RouterStepsWorkload):
        return router_steps.des(node, workload, seed=node.sim.seed)
    raise TypeError(f"no DES model for workload {type(workload).__name__}")


def run_analytic(
    topology: Topology, profile: CalibrationProfile, workload: Workload, seed: int
) -> Outcome:
    """Evaluate ``workload`` in closed form."""
    if isinstance(workload, GemmAllToAllWorkload):
        return gemm_alltoall.analytic(topology, profile, workload)
    if isinstance(workload, KernelChainWorkload):
        return kernel_chain.analytic(topology, profile, workload)
    if isinstance(workload, TransfersWorkload):
        return transfers.analytic(topology, profile, workload)
    if isinstance(workload, MoELayerWorkload):
        return moe.analytic(topology, profile, workload, seed=seed)
    if isinstance(workload, RouterStepsWorkload):
        return router_steps.analytic(topology, profile, workload, seed=seed)
    raise TypeError(f"no analytic model for workload {type(workload).__name__}")


__all__ = ["run_analytic", "run_des"]
