"""The Chrome/Perfetto trace is well formed: named tracks, non-negative slices, paired async
events, utilisation counters within [0, 1]."""

from __future__ import annotations

import json
from collections import Counter

from conftest import make_h100_spec, make_profile, make_scenario, make_star_topology

from gpusim import simulate
from gpusim.engine.trace import TraceEvent
from gpusim.export.perfetto import chrome_trace
from gpusim.hardware.rates import gpu_rates
from gpusim.kernels import kernel_cost
from gpusim.spec import GemmAllToAllWorkload, GemmOp


def test_trace_document_is_well_formed() -> None:
    wl = GemmAllToAllWorkload(gemm=GemmOp(m=2048, n=2048, k=2048), messages_per_peer=2)
    result = simulate(make_scenario(wl, topology=make_star_topology(4), trace=True))
    assert result.trace is not None
    doc = json.loads(json.dumps(chrome_trace(result.trace, "t")))
    events = doc["traceEvents"]
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert {"host cpu0", "gpu0", "gpu3", "links", "memory"} <= names
    for e in events:
        if e["ph"] == "X":
            assert e["dur"] >= 0 and e["ts"] >= 0
    begins = Counter(e["id"] for e in events if e["ph"] == "b")
    ends = Counter(e["id"] for e in events if e["ph"] == "e")
    assert begins == ends and begins
    util = [e for e in events if e["ph"] == "C" and e["name"].endswith("utilisation")]
    assert util and all(0 <= v <= 1 + 1e-9 for e in util for v in e["args"].values())
    sms = [e["args"]["busy SMs"] for e in events if e["ph"] == "C" and e["name"] == "busy SMs"]
    gemm_sms = kernel_cost(wl.gemm, gpu_rates(make_h100_spec(), make_profile())).sms
    assert max(sms) == gemm_sms and min(sms) == 0  # the GEMM's CTAs, one per SM
    # 4 GPUs x 3 peers x 2 messages cross an uplink and a downlink each
    link_slices = [e for e in events if e["ph"] == "b" and e["cat"] == "links"]
    assert len(link_slices) == 4 * 3 * 2 * 2


def test_chrome_trace_round_trips() -> None:
    from gpusim.export.perfetto import events_from_chrome

    wl = GemmAllToAllWorkload(gemm=GemmOp(m=1024, n=1024, k=1024))
    trace = simulate(make_scenario(wl, trace=True)).trace
    assert trace is not None
    back = events_from_chrome(json.loads(json.dumps(chrome_trace(trace, "t"))))

    def spans(events: list[TraceEvent]) -> list[tuple[str, str, str, str, float, float]]:
        return sorted(
            (e.kind, e.track.group, e.track.lane, e.name, e.start_s, e.end_s)
            for e in events
            if e.kind != "counter"
        )

    original, read_back = spans(trace), spans(back)
    assert len(original) == len(read_back) > 0
    for a, b in zip(original, read_back, strict=True):
        assert a[:4] == b[:4]
        assert abs(a[4] - b[4]) < 1e-12 and abs(a[5] - b[5]) < 1e-12
