"""``simulate(scenario) -> Result``: the one entry point, in either fidelity."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpusim.result import Result
    from gpusim.spec.scenario import ResolvedScenario, Scenario

# The model is imported on the first call, not with this module: `gpusim` exports `simulate`,
# and `gpusim --help` imports the package without wanting the model.


def resolve(scenario: ResolvedScenario | Scenario | str | Path) -> ResolvedScenario:
    """Any accepted form of scenario, resolved and validated."""
    from gpusim.spec.loading import load_scenario, scenario_from_dict
    from gpusim.spec.scenario import ResolvedScenario, Scenario

    if isinstance(scenario, ResolvedScenario):
        return scenario
    if isinstance(scenario, Scenario):
        return scenario_from_dict(scenario.model_dump(mode="json", exclude_none=True))
    return load_scenario(scenario)


def simulate(scenario: ResolvedScenario | Scenario | str | Path) -> Result:
    """Simulate a scenario. Deterministic: the same scenario and seed give the same result."""
    from gpusim.engine.sim import Simulation
    from gpusim.hardware.node import Node
    from gpusim.result import Result
    from gpusim.spec.scenario import Fidelity
    from gpusim.version import __version__
    from gpusim.workloads import run_analytic, run_des

    resolved = resolve(scenario)
    opts = resolved.options
    topology = resolved.topology
    if opts.nccl_transport is not None:
        topology = topology.model_copy(update={"nccl_transport": opts.nccl_transport})
    wall0 = time.perf_counter()
    trace: Any = None
    if opts.fidelity == Fidelity.des:
        sim = Simulation(trace=opts.trace)
        node = Node(topology, resolved.profile, sim)
        outcome = run_des(node, resolved.workload, seed=opts.seed)
        events = sim.events_scheduled()
        trace = sim.recorder.events if opts.trace else None
    else:
        outcome = run_analytic(topology, resolved.profile, resolved.workload, seed=opts.seed)
        events = 0
    return Result(
        scenario=resolved.name,
        fidelity=str(opts.fidelity),
        seed=opts.seed,
        scenario_hash=resolved.content_hash,
        profile_id=resolved.profile.id,
        topology=resolved.topology.name,
        gpusim_version=__version__,
        makespan_s=outcome.makespan_s,
        metrics=outcome.metrics,
        per_gpu=outcome.per_gpu,
        link_bytes=outcome.link_bytes,
        series=outcome.series,
        wall_s=time.perf_counter() - wall0,
        events=events,
        trace=trace,
    )
