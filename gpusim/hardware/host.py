"""Runtime host CPU threads: sequential issuers of CUDA API calls."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from gpusim.engine.sim import CountingEnvironment
from gpusim.engine.trace import TraceRecorder, Track


class HostThread:
    """One host thread. Its calls are sequential; busy time is what it spends in API calls."""

    def __init__(
        self, cpu_id: str, name: str, env: CountingEnvironment, recorder: TraceRecorder
    ) -> None:
        self.cpu_id = cpu_id
        self.name = name
        self.env = env
        self.recorder = recorder
        self.track = Track(f"host {cpu_id}", name)
        self.busy_s = 0.0
        self.calls = 0

    def spend(
        self,
        label: str | None,
        duration_s: float,
        cat: str | None = None,
        args: dict[str, Any] | None = None,
    ) -> Generator[simpy.Event, Any, None]:
        """Spend ``duration_s`` of this thread's time in a call named ``label`` (drawn as a slice
        of category ``cat``; ``None``: not drawn, the caller draws an enclosing slice)."""
        env = self.env
        start = float(env._now)
        busy = self.call(duration_s)
        if busy is not None:
            yield busy
        if label is not None and self.recorder.enabled:
            self.recorder.slice(self.track, label, start, float(env._now), args, cat)

    def call(self, duration_s: float) -> simpy.Event | None:
        """Count a call of ``duration_s`` (in ``busy_s`` and ``calls``) and return the timeout
        the thread spends in it, None when it takes no time: :meth:`spend` undrawn, without a
        generator (for the launch path, which draws its own slice)."""
        self.busy_s += duration_s
        self.calls += 1
        return self.env.timeout(duration_s) if duration_s > 0 else None

    def wait(
        self,
        label: str,
        events: list[simpy.Event],
        return_s: float,
        cat: str | None = None,
        args: dict[str, Any] | None = None,
    ) -> Generator[simpy.Event, Any, None]:
        """Block until every event fired (a host synchronisation), then pay ``return_s``."""
        start = float(self.env._now)
        pending = [e for e in events if not e.processed]
        if pending:
            yield self.env.all_of(pending)
        if return_s > 0:
            yield self.env.timeout(return_s)
        self.recorder.slice(self.track, label, start, float(self.env._now), args, cat)
