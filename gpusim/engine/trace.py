"""Timeline recording. The recorder is a no-op unless enabled; hot paths test ``enabled`` before
building any arguments, so a run without tracing pays one attribute read per site."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Track:
    """Where events are drawn: a group (Perfetto process) and a lane in it (thread)."""

    group: str
    lane: str


@dataclass(slots=True)
class TraceEvent:
    """One recorded event. ``kind``: 'slice' (may not overlap on its track, but may nest),
    'async' (may overlap), or 'counter' (``value`` at ``start_s``). ``cat``: the event category
    of the PyTorch profiler's trace ('cpu_op', 'cuda_runtime', 'kernel', 'gpu_memcpy') where the
    event is one of those."""

    kind: str
    track: Track
    name: str
    start_s: float
    end_s: float = 0.0
    value: float = 0.0
    args: dict[str, Any] | None = None
    cat: str | None = None


@dataclass
class TraceRecorder:
    """Collects trace events in memory when ``enabled``."""

    enabled: bool = False
    events: list[TraceEvent] = field(default_factory=list)

    def slice(
        self,
        track: Track,
        name: str,
        start_s: float,
        end_s: float,
        args: dict[str, Any] | None = None,
        cat: str | None = None,
    ) -> None:
        """A span on a track whose spans never overlap, though they may nest (a host thread,
        a stream)."""
        if self.enabled:
            self.events.append(TraceEvent("slice", track, name, start_s, end_s, 0.0, args, cat))

    def async_slice(
        self,
        track: Track,
        name: str,
        start_s: float,
        end_s: float,
        args: dict[str, Any] | None = None,
    ) -> None:
        """A span that may overlap others on the same track (transfers on a link)."""
        if self.enabled:
            self.events.append(TraceEvent("async", track, name, start_s, end_s, 0.0, args))

    def counter(self, track: Track, name: str, t_s: float, value: float) -> None:
        """A counter sample (link utilisation, busy SMs)."""
        if self.enabled:
            self.events.append(TraceEvent("counter", track, name, t_s, t_s, value))


NULL_RECORDER = TraceRecorder(enabled=False)
