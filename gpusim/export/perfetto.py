"""Chrome trace-event JSON (opens in ui.perfetto.dev and chrome://tracing).

Each track group becomes a process and each lane a thread; slices become complete ('X') events,
overlapping transfers become async ('b'/'e') events, and counters ('C') draw utilisation.

Launches recorded by the host runtime follow the PyTorch profiler's (Kineto's) layout, so tools
written for real traces read simulated ones: ``cpu_op`` / ``cuda_runtime`` / ``kernel`` /
``gpu_memcpy`` categories, ``args.correlation`` pairing a runtime call with its kernels,
``args["External id"]`` naming the enclosing op, and one ``ac2g`` flow (``s`` at the runtime
call, ``f`` with ``bp: "e"`` at its first kernel) per correlation id."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gpusim.engine.trace import TraceEvent, Track

_US_PER_S = 1e6
_FLOW_CAT = "ac2g"
_DEVICE_CATS = frozenset({"kernel", "gpu_memcpy"})


def chrome_trace(events: Iterable[TraceEvent], title: str = "gpusim") -> dict[str, Any]:
    """Convert recorded events to a Chrome trace document."""
    pids: dict[str, int] = {}
    tids: dict[Track, int] = {}
    out: list[dict[str, Any]] = []

    def ids(track: Track) -> tuple[int, int]:
        pid = pids.get(track.group)
        if pid is None:
            pid = pids[track.group] = len(pids) + 1
            out.append(
                {
                    "ph": "M",
                    "name": "process_name",
                    "pid": pid,
                    "tid": 0,
                    "args": {"name": track.group},
                }
            )
            out.append(
                {
                    "ph": "M",
                    "name": "process_sort_index",
                    "pid": pid,
                    "tid": 0,
                    "args": {"sort_index": pid},
                }
            )
        tid = tids.get(track)
        if tid is None:
            tid = tids[track] = len(tids) + 1
            out.append(
                {
                    "ph": "M",
                    "name": "thread_name",
                    "pid": pid,
                    "tid": tid,
                    "args": {"name": track.lane},
                }
            )
        return pid, tid

    async_id = 0
    flows: dict[int, dict[str, dict[str, Any]]] = {}
    for ev in events:
        pid, tid = ids(ev.track)
        ts = ev.start_s * _US_PER_S
        if ev.kind == "slice":
            item: dict[str, Any] = {
                "ph": "X",
                "name": ev.name,
                "pid": pid,
                "tid": tid,
                "ts": ts,
                "dur": (ev.end_s - ev.start_s) * _US_PER_S,
            }
            if ev.cat is not None:
                item["cat"] = ev.cat
            if ev.args:
                item["args"] = ev.args
            out.append(item)
            if ev.cat is not None and ev.args and "correlation" in ev.args:
                _flow_end(flows, ev.cat, ev.args["correlation"], pid, tid, ts)
        elif ev.kind == "async":
            async_id += 1
            common = {
                "name": ev.name,
                "cat": ev.track.group,
                "pid": pid,
                "tid": tid,
                "id": async_id,
            }
            out.append({"ph": "b", "ts": ts, **common, "args": ev.args or {}})
            out.append({"ph": "e", "ts": ev.end_s * _US_PER_S, **common})
        elif ev.kind == "counter":
            out.append(
                {
                    "ph": "C",
                    "name": ev.name if ev.track.lane == ev.name else f"{ev.track.lane} {ev.name}",
                    "pid": pid,
                    "ts": ts,
                    "args": {ev.name: ev.value},
                }
            )
    for _, ends in sorted(flows.items()):
        if "s" in ends and "f" in ends:
            out += [ends["s"], ends["f"]]
    return {"traceEvents": out, "displayTimeUnit": "ns", "otherData": {"title": title}}


def _flow_end(
    flows: dict[int, dict[str, dict[str, Any]]], cat: str, corr: int, pid: int, tid: int, ts: float
) -> None:
    """Remember the ac2g flow's start (the runtime call) or end (its earliest kernel)."""
    if cat == "cuda_runtime":
        phase = "s"
    elif cat in _DEVICE_CATS:
        phase = "f"
    else:
        return
    ends = flows.setdefault(corr, {})
    if phase in ends and ends[phase]["ts"] <= ts:
        return
    flow: dict[str, Any] = {"ph": phase, "id": corr, "pid": pid, "tid": tid, "ts": ts}
    flow |= {"cat": _FLOW_CAT, "name": _FLOW_CAT}
    if phase == "f":
        flow["bp"] = "e"
    ends[phase] = flow


def events_from_chrome(doc: dict[str, Any]) -> list[TraceEvent]:
    """Read back a document written by :func:`chrome_trace` (for plotting stored traces)."""
    groups: dict[int, str] = {}
    lanes: dict[tuple[int, int], str] = {}
    items = doc.get("traceEvents", [])
    for e in items:
        if e.get("ph") == "M" and e.get("name") == "process_name":
            groups[e["pid"]] = e["args"]["name"]
        elif e.get("ph") == "M" and e.get("name") == "thread_name":
            lanes[(e["pid"], e["tid"])] = e["args"]["name"]
    out: list[TraceEvent] = []
    begins: dict[int, dict[str, Any]] = {}
    for e in items:
        ph = e.get("ph")
        if ph == "X":
            track = Track(groups[e["pid"]], lanes[(e["pid"], e["tid"])])
            start = e["ts"] / _US_PER_S
            end = start + e["dur"] / _US_PER_S
            args, cat = e.get("args"), e.get("cat")
            out.append(TraceEvent("slice", track, e["name"], start, end, 0.0, args, cat))
        elif ph == "b":
            begins[e["id"]] = e
        elif ph == "e" and e["id"] in begins:
            b = begins.pop(e["id"])
            track = Track(groups[b["pid"]], lanes[(b["pid"], b["tid"])])
            out.append(
                TraceEvent("async", track, b["name"], b["ts"] / _US_PER_S, e["ts"] / _US_PER_S)
            )
        elif ph == "C":
            (value,) = e["args"].values()
            track = Track(groups[e["pid"]], e["name"])
            out.append(TraceEvent("counter", track, e["name"], e["ts"] / _US_PER_S, value=value))
    return out
