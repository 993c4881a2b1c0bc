"""The systems under study, built from the execution paths. One module per workload family,
each with ``des(node, workload, *, seed)`` and ``analytic(topology, profile, workload, *, seed)``;
``registry.py`` lists the families and dispatches on a workload's ``kind``."""

from __future__ import annotations

from gpusim.workloads.registry import FAMILIES, WorkloadFamily, family_of, run_analytic, run_des

__all__ = ["FAMILIES", "WorkloadFamily", "family_of", "run_analytic", "run_des"]
