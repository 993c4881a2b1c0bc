"""FluidNetwork and the max-min solver against closed forms.

Every expected value is derived in the test (in a comment where it is not obvious) from the
capacities, sizes and latencies, never copied from a run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import pytest
import simpy

from gpusim.engine.fluid import FluidNetwork
from gpusim.engine.maxmin import max_min_fair_rates
from gpusim.engine.sim import CountingEnvironment
from gpusim.engine.trace import TraceRecorder

REL = 1e-12
GB = 1e9


@dataclass(frozen=True)
class Xfer:
    """One transfer to start at ``start_s`` (the latency runs from there)."""

    route: tuple[int, ...]
    size_B: float
    start_s: float = 0.0
    latency_s: float = 0.0
    cap_Bps: float = math.inf


def run_to_completion(env: simpy.Environment, max_events: int = 100_000) -> None:
    """``env.run()`` with a budget, so a livelock (time not advancing) fails instead of hanging."""
    for _ in range(max_events):
        if env.peek() == math.inf:
            return
        env.step()
    raise AssertionError(f"simulation still busy after {max_events} events at t={env.now!r}")


def simulate(
    capacities_Bps: Sequence[float],
    xfers: Sequence[Xfer],
    recorder: TraceRecorder | None = None,
) -> tuple[list[float], FluidNetwork]:
    """Run the transfers on a fresh network; returns their completion times and the network."""
    env = CountingEnvironment()
    net = FluidNetwork(env) if recorder is None else FluidNetwork(env, recorder)
    for i, cap in enumerate(capacities_Bps):
        net.add_resource(f"r{i}", cap)
    done_s = [math.nan] * len(xfers)

    def start(i: int, x: Xfer, _ev: simpy.Event | None = None) -> None:
        ev = net.transfer(x.route, x.size_B, x.latency_s, x.cap_Bps, label=f"x{i}")
        ev.callbacks.append(lambda _ev: done_s.__setitem__(i, float(env.now)))

    for i, x in enumerate(xfers):
        if x.start_s > 0:
            env.timeout(x.start_s).callbacks.append(partial(start, i, x))
        else:
            start(i, x)
    run_to_completion(env)
    assert not any(math.isnan(t) for t in done_s), f"transfers never completed: {done_s}"
    return done_s, net


# -- single link -----------------------------------------------------------------------------


def test_one_transfer_takes_latency_plus_size_over_bandwidth() -> None:
    bw, size, lat = 50 * GB, 3e6, 2e-6
    (t,), net = simulate([bw], [Xfer((0,), size, latency_s=lat)])
    assert t == pytest.approx(lat + size / bw, rel=REL)
    assert net.carried_B[0] == pytest.approx(size, rel=REL)
    assert net.peak_load_Bps[0] == pytest.approx(bw, rel=REL)
    assert net.in_flight() == 0


def test_two_equal_transfers_share_a_link_equally() -> None:
    # Each gets bw/2 for its whole life: size / (bw/2) = 2*size/bw after the latency.
    bw, size, lat = 100 * GB, 1e6, 1e-6
    times, _ = simulate([bw], [Xfer((0,), size, latency_s=lat)] * 2)
    assert times == pytest.approx([lat + 2 * size / bw] * 2, rel=REL)


def test_multi_hop_path_runs_at_its_narrowest_link() -> None:
    caps = [400 * GB, 25 * GB, 100 * GB]
    size, lat = 8e6, 3e-6
    (t,), net = simulate(caps, [Xfer((0, 1, 2), size, latency_s=lat)])
    assert t == pytest.approx(lat + size / min(caps), rel=REL)
    # every hop carried the same bytes, at the bottleneck rate
    assert net.carried_B == pytest.approx([size] * 3, rel=REL)
    assert net.peak_load_Bps == pytest.approx([min(caps)] * 3, rel=REL)


def test_a_resource_crossed_twice_carries_each_byte_twice() -> None:
    # A copy within one memory (read and write on the same 100 GB/s resource) alone, capped
    # above the bound, or beside a flow elsewhere: each byte takes the resource twice, so the
    # copy runs at half its capacity, whichever solve path times it.
    bw, size = 100 * GB, 4e6
    for xfers in (
        [Xfer((0, 0), size)],
        [Xfer((0, 0), size, cap_Bps=80 * GB)],
        [Xfer((0, 0), size), Xfer((1,), size)],
    ):
        times, net = simulate([bw, bw], xfers)
        assert times[0] == pytest.approx(size / (bw / 2), rel=REL)
        assert net.carried_B[0] == pytest.approx(2 * size, rel=REL)
    assert max_min_fair_rates([(0, 0)], [1], [math.inf], [bw]) == [bw / 2]
    assert max_min_fair_rates([(0, 1, 0)], [2], [math.inf], [bw, bw]) == [bw / 4]


def test_early_finisher_frees_its_bandwidth() -> None:
    # Sizes S and 3S start together on one link of bandwidth bw:
    #   both run at bw/2 until the small one has S bytes: t1 = S / (bw/2) = 2S/bw;
    #   the big one then has 3S - S = 2S left at the full bw: another 2S/bw, so t2 = 4S/bw
    #   (= total bytes 4S / bw: the link never idles).
    bw, S = 10 * GB, 5e5
    times, _ = simulate([bw], [Xfer((0,), S), Xfer((0,), 3 * S)])
    assert times == pytest.approx([2 * S / bw, 4 * S / bw], rel=REL)


def test_staggered_start_second_flow_enters_mid_way() -> None:
    # A (size S) starts at 0 alone at bw; B (size S) enters at t0 = S/(2 bw), when A has S/2 left.
    #   both at bw/2: A's S/2 take S/bw, so A ends at t0 + S/bw = 1.5 S/bw, B then has S/2 done;
    #   B's last S/2 at the full bw take S/(2 bw): B ends at 2 S/bw (= 2S / bw, work-conserving).
    bw, S = 20 * GB, 2e6
    t0 = S / (2 * bw)
    times, _ = simulate([bw], [Xfer((0,), S), Xfer((0,), S, start_s=t0)])
    assert times == pytest.approx([1.5 * S / bw, 2 * S / bw], rel=REL)


def test_staggered_start_with_latency_shifts_entry() -> None:
    # Same as above, but B is issued at 0 with latency t0: it enters the link at t0 all the same.
    bw, S = 20 * GB, 2e6
    t0 = S / (2 * bw)
    times, _ = simulate([bw], [Xfer((0,), S), Xfer((0,), S, latency_s=t0)])
    assert times == pytest.approx([1.5 * S / bw, 2 * S / bw], rel=REL)


def test_per_flow_cap_below_fair_share_leaves_the_rest_to_the_other_flow() -> None:
    # Cap bw/4 < fair share bw/2: max-min gives the capped flow bw/4 and the other 3bw/4.
    bw, S = 40 * GB, 1e6
    cap = bw / 4
    rates = max_min_fair_rates([[0], [0]], [1, 1], [cap, math.inf], [bw])
    assert rates == pytest.approx([cap, bw - cap], rel=REL)
    # In the network (both size S): the free flow ends at S / (3bw/4) = 4S/(3bw); the capped one
    # runs at its cap throughout (it never wants more than bw/4), ending at S / cap = 4S/bw.
    times, net = simulate([bw], [Xfer((0,), S, cap_Bps=cap), Xfer((0,), S)])
    assert times == pytest.approx([S / cap, S / (bw - cap)], rel=REL)
    assert net.peak_load_Bps[0] == pytest.approx(bw, rel=REL)


def test_per_flow_cap_above_fair_share_is_inactive() -> None:
    bw = 40 * GB
    rates = max_min_fair_rates([[0], [0]], [1, 1], [0.9 * bw, math.inf], [bw])
    assert rates == pytest.approx([bw / 2, bw / 2], rel=REL)


@pytest.mark.parametrize("n_links", [2, 3, 5])
def test_parking_lot_gives_every_flow_half(n_links: int) -> None:
    # One long flow over links 0..n-1, one short flow on each link: every link has two flows, all
    # links saturate together at C/2 per flow.
    C, S = 50 * GB, 4e6
    routes = [list(range(n_links))] + [[i] for i in range(n_links)]
    rates = max_min_fair_rates(routes, [1] * len(routes), [math.inf] * len(routes), [C] * n_links)
    assert rates == pytest.approx([C / 2] * len(routes), rel=REL)
    # All of size S: every flow runs at C/2 throughout and ends at 2S/C.
    times, _ = simulate([C] * n_links, [Xfer(tuple(r), S) for r in routes])
    assert times == pytest.approx([2 * S / C] * len(routes), rel=REL)


def test_many_messages_in_one_class_finish_together_with_few_recomputations() -> None:
    # 1000 equal messages on one route form one flow class: each gets bw/1000, all finish at
    # latency + 1000*S/bw, and the rates are recomputed once on entry and once on exit, not per
    # message (class aggregation).
    n, bw, S, lat = 1000, 100 * GB, 64e3, 5e-6
    times, net = simulate([bw, 2 * bw], [Xfer((0, 1), S, latency_s=lat)] * n)
    assert times == pytest.approx([lat + n * S / bw] * n, rel=REL)
    assert net.recomputations < 10
    assert net.carried_B == pytest.approx([n * S, n * S], rel=REL)


def test_zero_byte_transfer_completes_after_its_latency() -> None:
    lat = 7e-6
    times, net = simulate([GB], [Xfer((0,), 0.0, latency_s=lat), Xfer((0,), 0.0, start_s=lat)])
    assert times == [lat, lat]
    assert net.carried_B == [0.0]


def test_zero_byte_zero_latency_transfer_completes_immediately() -> None:
    (t,), _ = simulate([GB], [Xfer((0,), 0.0)])
    assert t == 0.0


@pytest.mark.parametrize(
    ("size", "latency"), [(-1.0, 0.0), (1.0, -1e-6), (math.nan, 0.0), (1.0, math.nan)]
)
def test_negative_or_nan_size_or_latency_raises(size: float, latency: float) -> None:
    env = CountingEnvironment()
    net = FluidNetwork(env)
    r = net.add_resource("l", GB)
    with pytest.raises(ValueError):
        net.transfer([r], size, latency)


@pytest.mark.parametrize("cap", [0.0, -5.0, math.nan])
def test_non_positive_flow_cap_raises(cap: float) -> None:
    # A cap of 0 would never finish (silently: env.run() returns with the event pending); a
    # negative cap would send max_min_fair_rates into an endless loop.
    env = CountingEnvironment()
    net = FluidNetwork(env)
    r = net.add_resource("l", GB)
    with pytest.raises(ValueError):
        net.transfer([r], 1.0, 0.0, cap)


def test_non_positive_resource_capacity_raises() -> None:
    net = FluidNetwork(CountingEnvironment())
    with pytest.raises(ValueError):
        net.add_resource("dead", 0.0)


# -- clock resolution --------------------------------------------------------------------------


@pytest.mark.parametrize(("start_s", "size_B"), [(1.0, 1000.0), (3.0, 1.0), (10.0, 123.0)])
def test_short_transfer_late_in_the_run_completes(start_s: float, size_B: float) -> None:
    # Regression: a transfer far shorter than the clock value (1 kB on 100 GB/s = 10 ns, at
    # t = 1 s) finishes at a time the float clock rounds; the residual bytes were below the clock's
    # resolution, so the wake-up was rescheduled at the same instant forever (livelock).
    bw = 100 * GB
    (t,), net = simulate([bw], [Xfer((0,), size_B, start_s=start_s)])
    assert t == pytest.approx(start_s + size_B / bw, rel=1e-15)
    assert net.recomputations < 10


# -- tracing -----------------------------------------------------------------------------------


def test_trace_on_records_async_slices_and_bounded_utilisation() -> None:
    bw, S = 10 * GB, 1e6
    rec = TraceRecorder(enabled=True)
    xfers = [
        Xfer((0, 1), S, latency_s=1e-6, cap_Bps=bw / 3),
        Xfer((0,), 2 * S),
        Xfer((1,), S, start_s=5e-5),
    ]
    _, net = simulate([bw, bw], xfers, recorder=rec)
    slices = [e for e in rec.events if e.kind == "async"]
    # one slice per transfer per resource it crossed
    assert sorted((e.track.lane, e.name) for e in slices) == sorted(
        [("r0", "x0"), ("r1", "x0"), ("r0", "x1"), ("r1", "x2")]
    )
    for e in slices:
        assert e.end_s > e.start_s
        assert e.args is not None and e.args["bytes"] > 0
    counters = [e for e in rec.events if e.kind == "counter"]
    assert counters, "no utilisation counters recorded"
    assert {e.track.lane for e in counters} == {"r0", "r1"}
    assert all(e.name == "utilisation" for e in counters)
    assert all(-1e-12 <= e.value <= 1 + 1e-9 for e in counters)
    # the last sample on each resource says it went idle
    for lane in ("r0", "r1"):
        assert [e.value for e in counters if e.track.lane == lane][-1] == 0.0
    assert net.in_flight() == 0


def test_trace_off_records_nothing() -> None:
    rec = TraceRecorder(enabled=False)
    simulate([GB, GB], [Xfer((0, 1), 1e6), Xfer((0,), 1e6, latency_s=1e-6)], recorder=rec)
    assert rec.events == []


# -- max-min fairness is not monotone in capacity -----------------------------------------------


def test_max_min_rates_are_not_monotone_in_one_capacity() -> None:
    # L1 (cap 1) carries A and C, L2 (cap 2) carries A and B.
    #   L1 = 1: L1's fair share 1/2 < L2's 2/2, so A = C = 1/2; B takes L2's rest: 2 - 1/2 = 3/2.
    #   L1 = 3: L2's share 2/2 = 1 < L1's 3/2, so A = B = 1; C takes L1's rest: 3 - 1 = 2.
    # Raising L1 lets A grab more of L2, so B gets SLOWER (3/2 -> 1). Hence a per-transfer
    # "more bandwidth never delays anyone" property is false; tests/test_engine_properties.py
    # states monotonicity only for uniform scaling and for a single shared resource.
    A, B, C = [0, 1], [1], [0]
    before = max_min_fair_rates([A, B, C], [1, 1, 1], [math.inf] * 3, [1.0, 2.0])
    after = max_min_fair_rates([A, B, C], [1, 1, 1], [math.inf] * 3, [3.0, 2.0])
    assert before == pytest.approx([0.5, 1.5, 0.5], rel=REL)
    assert after == pytest.approx([1.0, 1.0, 2.0], rel=REL)
    assert after[1] < before[1]


def test_more_capacity_on_one_link_delays_a_transfer() -> None:
    # The same topology in the network: A and C are long (size 100), B is short (size 1):
    #   L1 = 1: B runs at 3/2 and ends at 1 / (3/2) = 2/3; L1 = 3: B runs at 1 and ends at 1.
    A, B, C = Xfer((0, 1), 100.0), Xfer((1,), 1.0), Xfer((0,), 100.0)
    (_, b_slow, _), _ = simulate([1.0, 2.0], [A, B, C])
    (_, b_fast, _), _ = simulate([3.0, 2.0], [A, B, C])
    assert b_slow == pytest.approx(2 / 3, rel=REL)
    assert b_fast == pytest.approx(1.0, rel=REL)


def test_uniform_scaling_with_staggered_arrivals_can_delay_a_transfer() -> None:
    # Why the uniform-scaling property needs every transfer to enter at one instant. Same topology
    # (L1: A, C; L2: A, B), A huge, C of size 1 from t=0, B of size 0.45 entering at t=1.7.
    #   k = 1   (L1=1, L2=2):     A = C = 1/2, so C ends at 2; B enters at 1.7 and runs at 3/2
    #                             (L2's rest) until 1.7 + 0.45/1.5 = 2.0, as C is still there.
    #   k = 1.2 (L1=1.2, L2=2.4): A = C = 0.6, so C ends at 1/0.6 = 5/3 < 1.7; A alone on L1 runs
    #                             at 1.2, B gets L2's rest 2.4 - 1.2 = 1.2 and ends at
    #                             1.7 + 0.45/1.2 = 2.075: later, on a network 20% faster everywhere.
    # C leaving early (thanks to the extra bandwidth) lets A take more of L2, which slows B.
    xfers = [Xfer((0, 1), 1e6), Xfer((1,), 0.45, start_s=1.7), Xfer((0,), 1.0)]
    (_, b_slow, c_slow), _ = simulate([1.0, 2.0], xfers)
    (_, b_fast, c_fast), _ = simulate([1.2, 2.4], xfers)
    assert c_slow == pytest.approx(2.0, rel=REL)
    assert c_fast == pytest.approx(1 / 0.6, rel=REL)
    assert b_slow == pytest.approx(1.7 + 0.45 / 1.5, rel=REL)
    assert b_fast == pytest.approx(1.7 + 0.45 / 1.2, rel=REL)
    assert b_fast > b_slow
