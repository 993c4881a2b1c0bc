"""The Chrome/Perfetto trace is well formed: named tracks, non-negative slices, paired async
events, utilisation counters within [0, 1]."""

from __future__ import annotations

import json
from collections import Counter

from conftest import make_scenario, make_star_topology

from gpusim import simulate
from gpusim.export.perfetto import chrome_trace
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
    assert max(sms) == 132 and min(sms) == 0
    # 4 GPUs x 3 peers x 2 messages cross an uplink and a downlink each
    link_slices = [e for e in events if e["ph"] == "b" and e["cat"] == "links"]
    assert len(link_slices) == 4 * 3 * 2 * 2
