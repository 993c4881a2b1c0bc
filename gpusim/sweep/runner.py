"""Running sweep points on any ``concurrent.futures.Executor`` and storing each as it finishes.

Points are content-addressed: a point whose scenario hash already has a shard is not run again,
so an interrupted sweep resumes where it stopped. A point that raises is recorded with its error
and the sweep goes on. Workers only compute; the calling process does all the writing, so remote
workers (Dask) need no access to the results folder.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from gpusim.export.perfetto import chrome_trace
from gpusim.simulate import simulate
from gpusim.spec.scenario import ResolvedScenario
from gpusim.sweep.expand import Point
from gpusim.sweep.store import ResultStore
from gpusim.version import git_revision


@dataclass(frozen=True)
class PointOutcome:
    """What a worker sends back for one scenario."""

    scenario_hash: str
    record: dict[str, Any] | None
    error: str | None
    trace: dict[str, Any] | None


def run_scenario(scenario: ResolvedScenario, scenario_hash: str) -> PointOutcome:
    """Simulate one scenario in a worker; any exception becomes an error message."""
    try:
        result = simulate(scenario)
    except Exception as exc:  # a failing point must not stop the sweep
        return PointOutcome(scenario_hash, None, f"{type(exc).__name__}: {exc}", None)
    record: dict[str, Any] = {
        "scenario": result.scenario,
        "fidelity": result.fidelity,
        "profile_id": result.profile_id,
        "gpusim_version": result.gpusim_version,
        "wall_s": result.wall_s,
        "events": result.events,
        "makespan_s": result.makespan_s,
    }
    record.update(result.metrics)
    trace = chrome_trace(result.trace, result.scenario) if result.trace is not None else None
    return PointOutcome(scenario_hash, record, None, trace)


def run_batch(batch: list[tuple[ResolvedScenario, str]]) -> list[PointOutcome]:
    """Several scenarios in one task (fewer round trips to the workers)."""
    return [run_scenario(scenario, h) for scenario, h in batch]


@dataclass
class SweepProgress:
    """Counts reported while a sweep runs."""

    total: int
    skipped: int = 0
    done: int = 0
    failed: int = 0

    @property
    def remaining(self) -> int:
        """Points neither finished nor failed yet."""
        return self.total - self.skipped - self.done - self.failed


@dataclass
class SweepOutcome:
    """How a sweep run ended."""

    progress: SweepProgress
    failures: dict[str, str] = field(default_factory=dict)
    interrupted: str | None = None

    @property
    def ok(self) -> bool:
        """True when every point has a result."""
        return not self.failures and self.interrupted is None


def manifest_for(
    points: Sequence[Point], name: str, description: str, **extra: Any
) -> dict[str, Any]:
    """The manifest describing a sweep's points."""
    axes: list[str] = []
    for p in points:
        axes.extend(a for a in p.axis_values if a not in axes)
    systems: list[str] = []
    for p in points:
        if p.system and p.system not in systems:
            systems.append(p.system)
    return {
        "name": name,
        "description": description,
        "axes": axes,
        "systems": systems,
        **extra,
        "points": [
            {
                "point": p.index,
                "system": p.system,
                "axes": p.axis_values,
                "seed": p.seed,
                "scenario_hash": p.scenario_hash,
            }
            for p in points
        ],
    }


def run_sweep(
    points: Sequence[Point],
    store: ResultStore,
    executor: Executor,
    *,
    batch_size: int | None = None,
    workers: int = 1,
    on_progress: Callable[[SweepProgress], None] | None = None,
) -> SweepOutcome:
    """Run every point that has no stored result; store results as they arrive."""
    store.prepare()
    done = store.done_hashes()
    todo: dict[str, ResolvedScenario] = {}
    for p in points:
        if p.scenario_hash not in done:
            todo.setdefault(p.scenario_hash, p.scenario)
    unique_total = len({p.scenario_hash for p in points})
    progress = SweepProgress(total=unique_total, skipped=unique_total - len(todo))
    outcome = SweepOutcome(progress)
    if on_progress:
        on_progress(progress)
    items = list(todo.items())
    size = batch_size or max(1, min(16, math.ceil(len(items) / (8 * max(1, workers)))))
    batches = [[(s, h) for h, s in items[i : i + size]] for i in range(0, len(items), size)]
    futures: list[Future[list[PointOutcome]]] = [executor.submit(run_batch, b) for b in batches]
    rev = git_revision()
    try:
        for future in as_completed(futures):
            for result in future.result():
                if result.record is not None:
                    if result.trace is not None:
                        store.write_trace(result.scenario_hash, result.trace)
                    store.write_result(result.scenario_hash, {**result.record, "git_rev": rev})
                    progress.done += 1
                else:
                    error = result.error or "unknown error"
                    store.write_failure(result.scenario_hash, error)
                    outcome.failures[result.scenario_hash] = error
                    progress.failed += 1
                if on_progress:
                    on_progress(progress)
    except BrokenProcessPool as exc:
        outcome.interrupted = f"a worker process died ({exc}); rerun to resume"
    except KeyboardInterrupt:
        outcome.interrupted = "interrupted; rerun to resume"
    finally:
        for f in futures:
            f.cancel()
    return outcome
