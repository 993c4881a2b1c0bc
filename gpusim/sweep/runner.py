"""Running sweep points on any ``concurrent.futures.Executor`` and storing each as it finishes.

Points are content-addressed: a point whose scenario hash already has a readable shard is not
run again, so an interrupted sweep resumes where it stopped (a shard that does not read is
recomputed). Each point is stored as soon as it finishes. A point that raises is recorded with its
one-line error and its formatted traceback, and the sweep goes on. Workers only compute; the
calling process does all the writing, so remote workers (Dask) need no access to the results
folder. On Ctrl-C or a dead worker the pending points are cancelled and local workers stopped at
once; what finished stays stored.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from gpusim.export.perfetto import chrome_trace
from gpusim.simulate import simulate
from gpusim.spec.scenario import ResolvedScenario
from gpusim.sweep.executors import stop_now
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
    traceback: str | None = None


def run_scenario(scenario: ResolvedScenario, scenario_hash: str) -> PointOutcome:
    """Simulate one scenario in a worker; any exception becomes a one-line error message, with
    the formatted traceback kept beside it for whoever debugs the model."""
    try:
        result = simulate(scenario)
    except Exception as exc:  # a failing point must not stop the sweep
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        return PointOutcome(scenario_hash, None, message, None, traceback.format_exc())
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


def manifest_entry(point: Point) -> dict[str, Any]:
    """What the manifest keeps of one point: its coordinates and hash, not its scenario."""
    return {
        "point": point.index,
        "system": point.system,
        "axes": point.axis_values,
        "seed": point.seed,
        "scenario_hash": point.scenario_hash,
    }


def _manifest(
    entries: Sequence[dict[str, Any]], name: str, description: str, **extra: Any
) -> dict[str, Any]:
    axes: list[str] = []
    systems: list[str] = []
    for entry in entries:
        axes.extend(a for a in entry["axes"] if a not in axes)
        if entry["system"] and entry["system"] not in systems:
            systems.append(entry["system"])
    return {
        "name": name,
        "description": description,
        "axes": axes,
        "systems": systems,
        **extra,
        "points": list(entries),
    }


def manifest_for(
    points: Sequence[Point], name: str, description: str, **extra: Any
) -> dict[str, Any]:
    """The manifest describing a sweep's points."""
    return _manifest([manifest_entry(p) for p in points], name, description, **extra)


def run_sweep(
    points: Iterable[Point],
    store: ResultStore,
    executor: Executor,
    *,
    total: int | None = None,
    manifest_fields: dict[str, Any] | None = None,
    batch_size: int = 1,
    on_progress: Callable[[SweepProgress], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> SweepOutcome:
    """Run every point that has no stored result and store results as they arrive.

    ``points`` may be a lazy iterator (validate them first, see
    :func:`~gpusim.sweep.expand.validate_points`): points are submitted as they are produced and
    only their manifest entries are kept. If a point fails validation anyway, its SpecError
    propagates after the work already submitted is cancelled (finished points stay stored). With
    ``manifest_fields`` the manifest is written once every point is known. ``batch_size`` points
    go to a worker per task (1: every point is stored the moment it finishes). Shards that do not
    read are removed and recomputed, each reported through ``on_warning``.
    """
    store.prepare()
    for bad in store.drop_unreadable_shards():
        if on_warning:
            on_warning(f"{bad}: does not read (truncated or corrupt); recomputing its point")
    done = store.done_hashes()
    progress = SweepProgress(total=total or 0)
    outcome = SweepOutcome(progress)
    rev = git_revision()
    futures: list[Future[list[PointOutcome]]] = []
    seen: set[str] = set()
    entries: list[dict[str, Any]] = []
    batch: list[tuple[ResolvedScenario, str]] = []

    def collect(block: bool) -> None:
        ready = as_completed(list(futures)) if block else [f for f in futures if f.done()]
        for future in ready:  # lazily: each result is stored as soon as it arrives
            futures.remove(future)
            for result in future.result():
                _store(result, store, outcome, rev)
            if on_progress:
                on_progress(progress)

    try:
        for point in points:
            entries.append(manifest_entry(point))
            if total is None:
                progress.total += 1
            if point.scenario_hash in done or point.scenario_hash in seen:
                progress.skipped += 1
            else:
                seen.add(point.scenario_hash)
                batch.append((point.scenario, point.scenario_hash))
                if len(batch) >= batch_size:
                    futures.append(executor.submit(run_batch, batch))
                    batch = []
            collect(block=False)
        if batch:
            futures.append(executor.submit(run_batch, batch))
        if manifest_fields is not None:
            store.write_manifest(_manifest(entries, **manifest_fields))
        if on_progress:
            on_progress(progress)
        collect(block=True)
    except BrokenProcessPool as exc:
        outcome.interrupted = f"a worker process died ({exc}); rerun to resume"
        stop_now(executor)
    except KeyboardInterrupt:
        outcome.interrupted = "interrupted; rerun to resume"
        stop_now(executor)
    finally:
        if outcome.interrupted and manifest_fields is not None and not store.has_manifest():
            # stopped while points were still being expanded: the manifest of the points known
            # so far lets the summary and the report read what finished (a rerun rewrites it)
            store.write_manifest(_manifest(entries, **manifest_fields))
        for f in futures:
            f.cancel()
    return outcome


def _store(result: PointOutcome, store: ResultStore, outcome: SweepOutcome, rev: str) -> None:
    if result.record is not None:
        if result.trace is not None:
            store.write_trace(result.scenario_hash, result.trace)
        store.write_result(result.scenario_hash, {**result.record, "git_rev": rev})
        outcome.progress.done += 1
    else:
        error = result.error or "unknown error"
        store.write_failure(result.scenario_hash, error, result.traceback)
        outcome.failures[result.scenario_hash] = error
        outcome.progress.failed += 1
