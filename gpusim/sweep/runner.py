"""Running sweep points on any ``concurrent.futures.Executor`` and storing each as it finishes.

Points are content-addressed: a point whose scenario hash already has a stored result is not run
again, so an interrupted sweep resumes where it stopped (a stored file that does not read is
recomputed). Workers resolve each point from the sweep's base and the point's overrides (the base's
topology and profile validated once per worker; the base pickled once, see :class:`BaseParcel`),
without the checks the calling process ran when it validated the point (see
:meth:`~gpusim.sweep.expand.SweepBase.resolve_validated`), and send back results; the calling
process stores each result the moment it arrives (see :mod:`gpusim.sweep.store`). Points go to
workers in batches sized to about :data:`BATCH_TARGET_S` of work each, so fast points do not pay a
round trip each and a kill loses at most that much computing per worker. A point that raises is
recorded with its one-line error and its formatted traceback, and the sweep goes on. Workers only
compute; the calling process does all the writing, so remote workers (Dask) need no access to the
results folder. On Ctrl-C or a dead worker the pending points are cancelled and local workers
stopped at once; what finished stays stored.
"""

from __future__ import annotations

import pickle
import time
import traceback
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Any

from gpusim.export.perfetto import chrome_trace
from gpusim.simulate import simulate
from gpusim.spec.scenario import ResolvedScenario
from gpusim.sweep.executors import stop_now
from gpusim.sweep.expand import Point, PointRef, SweepBase
from gpusim.sweep.store import ResultStore
from gpusim.version import git_revision

BATCH_TARGET_S = 0.2
"""CPU seconds of work a batch of points aims at (sized from the points finished so far). A
task costs about 0.8 ms of CPU besides its points (the executor's threads in the calling
process, the pipes, the worker waking up; measured with ProcessPoolExecutor on 2 workers): 0.4 %
of a batch of this size (it was 1.6 % at 0.05 s, 0.2 ms a per-token MoE point)."""
TRACED_BATCH_TARGET_S = 0.05
""":data:`BATCH_TARGET_S` once a point has come back with a trace: a task's traces are held in
memory, in the worker and then in the calling process, until they are stored."""
MAX_BATCH = 512
"""The most points one task carries."""
MAX_IN_FLIGHT = 64
"""Tasks submitted and not yet collected, at most (the rest wait in the parent, as overrides);
more are submitted once no more than half that many are left."""


@dataclass(frozen=True)
class PointOutcome:
    """What a worker sends back for one scenario."""

    scenario_hash: str
    record: dict[str, Any] | None
    error: str | None
    trace: dict[str, Any] | None
    traceback: str | None = None
    cpu_s: float = 0.0
    """CPU seconds the worker spent on the point: its simulation and result, not its resolution
    (0 for a point whose resolution failed); sizes the batches."""


def _failure(scenario_hash: str, exc: Exception, cpu_s: float) -> PointOutcome:
    message = " ".join(f"{type(exc).__name__}: {exc}".split())
    return PointOutcome(scenario_hash, None, message, None, traceback.format_exc(), cpu_s)


def run_scenario(scenario: ResolvedScenario, scenario_hash: str) -> PointOutcome:
    """Simulate one scenario in a worker; any exception becomes a one-line error message, with
    the formatted traceback kept beside it for whoever debugs the model."""
    started = time.process_time()
    try:
        result = simulate(scenario)
    except Exception as exc:  # a failing point must not stop the sweep
        return _failure(scenario_hash, exc, time.process_time() - started)
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
    cpu_s = time.process_time() - started
    return PointOutcome(scenario_hash, record, None, trace, None, cpu_s)


def run_batch(batch: list[tuple[ResolvedScenario, str]]) -> list[PointOutcome]:
    """Several scenarios in one task (fewer round trips to the workers)."""
    return [run_scenario(scenario, h) for scenario, h in batch]


@dataclass(frozen=True)
class BaseParcel:
    """A sweep's base as a task carries it: its token and its pickle, compressed, made once by
    the calling process (not once per task); a worker opens it the first time it meets the
    token. Compressed, FlashMoE on 2 x H100 is 11 KB a task instead of 73 KB (less to copy
    through the pipe to a worker per task, and no write that outgrows the pipe's buffer)."""

    token: str
    payload: bytes
    """The base's pickle, zlib-compressed."""

    @classmethod
    def of(cls, base: SweepBase) -> BaseParcel:
        """The parcel of ``base`` as it is now: the token says how many documents its cache
        holds (a base whose cache has grown since is another parcel)."""
        token = f"{base.token}+{len(base.cache.docs)}"
        return cls(token, zlib.compress(pickle.dumps(base, protocol=pickle.HIGHEST_PROTOCOL)))

    def current(self, base: SweepBase) -> BaseParcel:
        """This parcel, or a new one when ``base``'s cache has grown since it was made."""
        return self if self.token == f"{base.token}+{len(base.cache.docs)}" else self.of(base)

    def open(self) -> SweepBase:
        """The base."""
        base = pickle.loads(zlib.decompress(self.payload))
        if not isinstance(base, SweepBase):
            raise TypeError(f"a base parcel holds a {type(base).__name__}, not a SweepBase")
        return base


_WORKER_BASES: dict[str, SweepBase] = {}
"""In a worker process: the sweep bases seen, by token, with their validated topologies and
profiles (a base arrives with every batch; the first copy is kept)."""
_WORKER_BASES_KEPT = 4


def run_planned(
    base: SweepBase | BaseParcel, batch: list[tuple[dict[str, Any], str]]
) -> list[PointOutcome]:
    """Several points of one sweep in one task, each resolved from ``base`` and its overrides
    as the scenario that was validated (see :meth:`SweepBase.resolve_validated`)."""
    known = _WORKER_BASES.get(base.token)
    if known is None:
        while len(_WORKER_BASES) >= _WORKER_BASES_KEPT:
            _WORKER_BASES.pop(next(iter(_WORKER_BASES)))
        opened = base.open() if isinstance(base, BaseParcel) else base
        known = _WORKER_BASES[base.token] = opened
    # Every point of the batch resolved first, then every one run: each phase runs back to
    # back with its code and data warm (a resolution right after a simulation took about
    # twice as long as one after another).
    resolved: list[ResolvedScenario | PointOutcome] = []
    for overrides, scenario_hash in batch:
        try:
            resolved.append(known.resolve_validated(overrides, scenario_hash))
        except Exception as exc:  # a file changed since validation: this point fails alone
            # no CPU of its own: a point's cpu_s is its simulation's, never its resolution's
            # (so no clock is read around each resolution)
            resolved.append(_failure(scenario_hash, exc, 0.0))
    return [
        item if isinstance(item, PointOutcome) else run_scenario(item, scenario_hash)
        for item, (_, scenario_hash) in zip(resolved, batch, strict=True)
    ]


class _BatchSizer:
    """Points per task, from the mean time of the points finished so far (and whether they
    come back traced, see :data:`TRACED_BATCH_TARGET_S`)."""

    def __init__(self, fixed: int | None) -> None:
        self.fixed = fixed
        self.points = 0
        self.seconds = 0.0
        self.target_s = BATCH_TARGET_S

    def add(self, outcome: PointOutcome) -> None:
        self.points += 1
        self.seconds += outcome.cpu_s
        if outcome.trace is not None:
            self.target_s = TRACED_BATCH_TARGET_S

    def size(self) -> int:
        if self.fixed is not None:
            return self.fixed
        if self.points == 0:
            return 1
        mean_s = max(self.seconds / self.points, 1e-6)
        return max(1, min(MAX_BATCH, int(self.target_s / mean_s)))


@dataclass
class SweepProgress:
    """Counts reported while a sweep runs."""

    total: int
    skipped: int = 0
    done: int = 0
    failed: int = 0
    worker_cpu_s: float = 0.0
    """CPU seconds the workers spent running the points taken in so far (each point's
    :attr:`PointOutcome.cpu_s`: its simulation and result, not its resolution)."""

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


def manifest_entry(point: PointRef) -> dict[str, Any]:
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
    points: Sequence[PointRef], name: str, description: str, **extra: Any
) -> dict[str, Any]:
    """The manifest describing a sweep's points."""
    return _manifest([manifest_entry(p) for p in points], name, description, **extra)


def run_sweep(
    points: Iterable[PointRef],
    store: ResultStore,
    executor: Executor,
    *,
    base: SweepBase | None = None,
    total: int | None = None,
    manifest_fields: dict[str, Any] | None = None,
    batch_size: int | None = None,
    max_in_flight: int = MAX_IN_FLIGHT,
    on_progress: Callable[[SweepProgress], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> SweepOutcome:
    """Run every point that has no stored result and store results as they arrive.

    With ``base`` (see :func:`~gpusim.sweep.expand.plan_points`) workers resolve each point from
    the base and the point's overrides; without, ``points`` must be :class:`Point` s and their
    scenarios are sent. ``points`` may be a lazy iterator (validate them first, see
    :func:`~gpusim.sweep.expand.validate_points`): points are submitted as they are produced and
    only their manifest entries are kept. If a point fails validation anyway, its SpecError
    propagates after the work already submitted is cancelled (finished points stay stored). With
    ``manifest_fields`` the manifest is written once every point is known. ``batch_size`` points
    go to a worker per task (default: about :data:`BATCH_TARGET_S` of work). Stored files that do
    not read are dropped and their points recomputed, each reported through ``on_warning``. The
    store is compacted at the start and at the end (see :meth:`ResultStore.compact`).
    """
    store.prepare()
    for bad in store.compact():
        if on_warning:
            on_warning(f"{bad}: does not read (truncated or corrupt); recomputing its points")
    done = store.done_hashes()
    progress = SweepProgress(total=total or 0)
    outcome = SweepOutcome(progress)
    rev = git_revision()
    futures: set[Future[list[PointOutcome]]] = set()
    # tasks as they finish, put by their done-callbacks (a blocking get waits for the next one,
    # without wait()'s waiter on every task in flight)
    finished: SimpleQueue[Future[list[PointOutcome]]] = SimpleQueue()
    seen: set[str] = set()
    entries: list[dict[str, Any]] = []
    queue: deque[PointRef] = deque()
    sizer = _BatchSizer(batch_size)
    parcel = BaseParcel.of(base) if base is not None else None

    def submit() -> None:
        nonlocal parcel
        if len(futures) > max_in_flight // 2:
            # topped up in bursts, not a task per task taken in: a ProcessPoolExecutor's
            # thread wakes for every submit, and once for a burst
            return
        while queue and len(futures) < max_in_flight:
            chunk = [queue.popleft() for _ in range(min(sizer.size(), len(queue)))]
            if base is not None and parcel is not None:
                parcel = parcel.current(base)
            future = _submit(executor, parcel, chunk)
            futures.add(future)
            future.add_done_callback(finished.put)

    def collect(block: bool) -> None:
        """Store what has finished (cheap when nothing has); with ``block``, wait for a task
        first if none has."""
        ready = []
        if block and futures and finished.empty():
            ready.append(finished.get())  # every task in flight puts itself when done
        while not finished.empty():
            ready.append(finished.get())
        stored = False
        for future in ready:  # each result is stored as soon as it is taken in
            if future not in futures:
                continue  # not one of this run's tasks in flight
            futures.discard(future)
            results = future.result()
            for result in results:
                sizer.add(result)
            _store(results, store, outcome, rev)
            stored = True
        if stored and on_progress:
            on_progress(progress)

    try:
        for point in points:
            entries.append(manifest_entry(point))
            if total is None:
                progress.total += 1
            if point.scenario_hash in done or point.scenario_hash in seen:
                progress.skipped += 1
                continue
            seen.add(point.scenario_hash)
            queue.append(point)
            if len(queue) >= sizer.size():
                submit()
                collect(block=False)
        if manifest_fields is not None:
            store.write_manifest(_manifest(entries, **manifest_fields))
        if on_progress:
            on_progress(progress)
        while queue or futures:
            submit()
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
        store.compact()
    return outcome


def _submit(
    executor: Executor, base: BaseParcel | None, chunk: list[PointRef]
) -> Future[list[PointOutcome]]:
    """One task: the chunk's overrides with the base, or (no base) their scenarios."""
    if base is not None:
        return executor.submit(run_planned, base, [(p.overrides, p.scenario_hash) for p in chunk])
    scenarios = []
    for point in chunk:
        if not isinstance(point, Point):
            raise TypeError("run_sweep needs the sweep's base to run points without scenarios")
        scenarios.append((point.scenario, point.scenario_hash))
    return executor.submit(run_batch, scenarios)


def _store(
    results: list[PointOutcome], store: ResultStore, outcome: SweepOutcome, rev: str
) -> None:
    """Store the results of one task, which arrived together: the finished ones in one write."""
    finished = []
    for result in results:
        outcome.progress.worker_cpu_s += result.cpu_s
        if result.record is not None:
            if result.trace is not None:
                store.write_trace(result.scenario_hash, result.trace)
            finished.append((result.scenario_hash, {**result.record, "git_rev": rev}))
            outcome.progress.done += 1
        else:
            error = result.error or "unknown error"
            store.write_failure(result.scenario_hash, error, result.traceback)
            outcome.failures[result.scenario_hash] = error
            outcome.progress.failed += 1
    store.write_results(finished)
