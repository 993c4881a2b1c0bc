"""The discrete-event model: draft and target passes as aggregate kernels on the GPU, weight
loads as copy-engine transfers through the fluid network (source CPU memory, the host link,
the GPU's HBM), so a draft pass beside a weight stream and the stream slow each other where
they share HBM. One compute lock keeps the two models from computing at once (the target
first when both wait, llmcad.md section 5, rule 5); provisional draft steps start only while
the verification still has weights to load."""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

import simpy

from gpusim.hardware.gpu import GPURuntime
from gpusim.hardware.node import Node
from gpusim.hardware.platform import MEMORY_GROUP
from gpusim.result import Outcome
from gpusim.spec.speculative import SpeculativeDecodingWorkload
from gpusim.workloads.common import network_link_bytes
from gpusim.workloads.speculative.costs import PassCost
from gpusim.workloads.speculative.metrics import outcome
from gpusim.workloads.speculative.setup import Setup, program
from gpusim.workloads.speculative.strategies import Draft, Program, Request
from gpusim.workloads.speculative.timing import TimeSplit

Proc = Generator[simpy.Event, Any, None]
TARGET, DRAFT = 0, 1
"""Compute-lock priorities: the target's layers before waiting draft steps."""


class Engine:
    """The GPU side of one run."""

    def __init__(self, node: Node, s: Setup) -> None:
        self.s = s
        self.env = node.sim.env
        self.gpu: GPURuntime = node.gpus[s.gpu]
        self.lock = simpy.PriorityResource(self.env, capacity=1)
        self.shared = s.wl.strategy == "llmcad" and s.wl.provisional
        """Whether two models may want the GPU at once (provisional drafting)."""
        self.buffers = simpy.Resource(self.env, capacity=s.plan.buffers)
        self.split = TimeSplit()
        self.busy_s = 0.0
        source = s.source_index
        if source is None:  # a storage device: its read rate is a resource of its own
            source = node.network.add_resource(f"{s.source}.read", s.source_Bps, MEMORY_GROUP)
        self.stream_resources = (source, *s.route_resources)

    def compute(self, cost: PassCost, name: str, priority: int) -> Proc:
        """Run ``cost`` as one kernel on every SM, holding the compute lock when provisional
        drafting may compete for the GPU; adds its duration to ``busy_s``."""
        if not self.shared:
            yield from self._kernel(cost, name)
            return
        with self.lock.request(priority=priority) as turn:
            yield turn
            yield from self._kernel(cost, name)

    def _kernel(self, cost: PassCost, name: str) -> Proc:
        start = float(self.env.now)
        yield from self.gpu.run_kernel(
            name, self.gpu.rates.sm_count, cost.floor_s, cost.body_s, cost.hbm_bytes
        )
        self.busy_s += float(self.env.now) - start

    def load(self, layer: int) -> Proc:
        """Copy one streamed layer's weights into the GPU."""
        s = self.s
        yield from self.gpu.copy(
            self.stream_resources, s.load_latency_s, s.plan.layer_B, f"load layer {layer}"
        )

    def verify(self, tokens: int, provisional_max: int) -> Generator[simpy.Event, Any, int]:
        """One target pass over ``tokens`` tokens; returns the provisional steps that ran."""
        s, env = self.s, self.env
        plan = s.plan
        layer = s.layer(tokens)
        streamed = s.streamed_layer(tokens)
        start = float(env.now)
        self.busy_s = 0.0
        if plan.resident_layers:
            resident = layer.share(plan.resident_layers)
            yield from self.compute(resident, f"target resident x{tokens}", TARGET)
        if not plan.streamed_layers:
            self.split.verification(float(env.now) - start, self.busy_s, 0.0, 0.0)
            return 0
        first = plan.resident_layers
        loaded = [env.event() for _ in range(plan.streamed_layers)]
        held: list[simpy.resources.resource.Request] = []
        target_done = env.event()

        eta = [math.inf] * len(loaded)
        """Earliest end of each layer's load: its start plus its uncontended time."""
        load_s = s.pass_shape(tokens).layer_load_s
        arrived = [0]
        """Loads ended so far (they end in order): the next is the one the target waits on."""

        def loader() -> Proc:
            for k, done in enumerate(loaded):
                if s.pipelined:
                    slot = self.buffers.request()
                    yield slot
                    held.append(slot)
                eta[k] = float(env.now) + load_s
                yield from self.load(first + k)
                done.succeed()
                arrived[0] = k + 1

        def layers_loaded(k: int) -> Generator[simpy.Event, Any, int]:
            """Compute streamed layers from ``k`` while they are loaded; returns the next."""
            while True:
                yield from self._kernel(streamed, f"target layer {first + k}")
                self.buffers.release(held[k])
                k += 1
                if k == len(loaded) or not loaded[k].triggered:
                    return k

        def target() -> Proc:
            # the target keeps the GPU while its next layer is loaded, so a provisional draft
            # runs only while the target waits on a load (rule 5 and 6 of llmcad.md section 5)
            k = 0
            while k < len(loaded):
                if not loaded[k].processed:
                    yield loaded[k]
                if not self.shared:
                    k = yield from layers_loaded(k)
                    continue
                with self.lock.request(priority=TARGET) as turn:
                    yield turn
                    k = yield from layers_loaded(k)
            target_done.succeed()

        if s.pipelined:
            env.process(loader())
            env.process(target())
        else:  # std: each layer loaded, then computed
            for k in range(plan.streamed_layers):
                yield from self.load(first + k)
                yield from self.compute(streamed, f"target layer {first + k}", TARGET)
            target_done.succeed()
        steps = 0
        provisional_s = 0.0
        provisional_parts, layers = 0, 1
        if provisional_max > 0:
            # A provisional step runs draft layer by draft layer (the GPU interleaves the two
            # models' kernels), so a target layer whose weights arrive waits one draft layer at
            # most. Consecutive draft layers run as one kernel while the target's next load
            # cannot end before them (its earliest end, ``eta``), so the events per step stay
            # few.
            layers = s.draft_costs().model.layers
            part = s.provisional_step().share(1.0 / layers)
            done_parts = 0
            while steps < provisional_max and not loaded[-1].triggered:
                with self.lock.request(priority=DRAFT) as turn:
                    yield turn
                    now = float(env.now)
                    waiting = arrived[0]
                    left = layers - done_parts
                    ahead = eta[waiting] - now  # inf: that load waits for a buffer
                    room = left if ahead >= left * part.time_s else int(ahead // part.time_s)
                    run = max(1, room)
                    chunk = part.share(run)
                    yield from self.gpu.run_kernel(
                        "provisional draft",
                        self.gpu.rates.sm_count,
                        chunk.floor_s,
                        chunk.body_s,
                        chunk.hbm_bytes,
                    )
                    provisional_s += float(env.now) - now
                done_parts += run
                provisional_parts += run
                if done_parts == layers:
                    steps, done_parts = steps + 1, 0
        if not target_done.processed:
            yield target_done
        self.split.verification(
            float(env.now) - start, self.busy_s, provisional_s, provisional_parts / layers
        )
        return steps

    def run(self, prog: Program) -> Proc:
        """Drive the strategy's program."""
        try:
            request: Request = next(prog)
            while True:
                reply = 0
                if isinstance(request, Draft):
                    begin = float(self.env.now)
                    cost = self.s.draft_costs().of(request.tokens)
                    yield from self.compute(cost, f"draft x{request.tokens}", DRAFT)
                    self.split.draft_s += float(self.env.now) - begin
                else:
                    reply = yield from self.verify(request.tokens, request.provisional_max)
                request = prog.send(reply)
        except StopIteration:
            pass


def des(node: Node, wl: SpeculativeDecodingWorkload, *, seed: int) -> Outcome:
    """Simulate the run with the discrete-event engine; ``seed`` seeds the draft model."""
    s = Setup.of(node.platform, wl)
    engine = Engine(node, s)
    prog, tally = program(wl, seed)
    node.sim.env.process(engine.run(prog))
    node.sim.run()
    node.finish()
    return outcome(s, tally, engine.split, float(node.sim.env.now), network_link_bytes(node))


__all__ = ["Engine", "des"]
