"""The closed form: each request's uncontended duration, summed in program order.

Provisional drafting fills the verification's load-bound time with whole draft steps:
``min(provisional_max, floor((pass - compute) / draft step))`` (no contention, no step delaying
the target's compute; the DES has both)."""

from __future__ import annotations

import math

from gpusim.hardware.platform import Platform
from gpusim.result import Outcome
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.speculative import SpeculativeDecodingWorkload
from gpusim.spec.topology import Topology
from gpusim.workloads.speculative.metrics import outcome
from gpusim.workloads.speculative.setup import Setup, program
from gpusim.workloads.speculative.strategies import Draft
from gpusim.workloads.speculative.timing import TimeSplit, pipelined_pass_s, sequential_pass_s


def analytic(
    topology: Topology, profile: CalibrationProfile, wl: SpeculativeDecodingWorkload, *, seed: int
) -> Outcome:
    """Evaluate the run in closed form; ``seed`` seeds the draft model."""
    platform = Platform.of(topology, profile)
    s = Setup.of(platform, wl)
    prog, tally = program(wl, seed)
    split = TimeSplit()
    total = 0.0
    passes = 0
    try:
        request = next(prog)
        while True:
            reply = 0
            if isinstance(request, Draft):
                step = s.draft_costs().of(request.tokens).time_s
                split.draft_s += step
                total += step
            else:
                shape = s.pass_shape(request.tokens)
                run = pipelined_pass_s if s.pipelined else sequential_pass_s
                pass_s = run(shape)
                compute = shape.compute_s
                provisional = 0.0
                if request.provisional_max > 0 and shape.streamed_layers > 0:
                    step = s.provisional_step().time_s
                    reply = min(request.provisional_max, math.floor((pass_s - compute) / step))
                    provisional = reply * step
                split.verification(pass_s, compute, provisional, reply)
                total += pass_s
                passes += 1
            request = prog.send(reply)
    except StopIteration:
        pass
    streamed = s.plan.streamed_B * passes
    links = {platform.links[i].name: streamed for i in s.stream_links} if streamed > 0 else {}
    return outcome(s, tally, split, total, links)


__all__ = ["analytic"]
