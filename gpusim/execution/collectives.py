"""NCCL collectives in the DES: one object per collective call, one stream operation per rank.

A collective is bulk-synchronous like NCCL. Each rank's part is a kernel on that rank's stream
(:meth:`Collective.op`): it takes ``sms`` SMs (NCCL channels) on the rank's GPU for its whole
duration (so it contends with compute kernels, and a GPU whose SMs are all busy enters late),
pays the call's fixed latency once on entry (NCCL's base latency for its protocol, plus any
extra ``setup_s``), and is then *posted*. Data moves between posted ranks only (NCCL send/recv
pairs need both sides). Each message takes its transport's path
(:mod:`gpusim.hardware.transport`): one fluid flow per leg (P2P and NET one leg; SHM two, the
copy into host memory and the copy out, both crossing the host memory resource), each leg
waiting the protocol's per-step latency and then carrying the protocol's wire bytes
(:mod:`gpusim.kernels.nccl`) max-min shared with everything else on the network. A rank's part
ends when all of its own sends and receives are done. A rank that enters late therefore holds
up exactly the peers that exchange data with it, and through them the rest: "every rank waits
for the slowest" emerges from the mechanism rather than being imposed.

The closed forms in :mod:`gpusim.kernels.collectives` are the analytic oracles for ranks that
enter together.

Typical use, one call per rank::

    coll = all_to_all(node, ranks, send_B, sms=costs.sms, setup_s=costs.setup_s)
    for r in ranks:
        node.gpus[r].stream(0).submit(coll.name, coll.op(r), doorbell_s)

A rank whose op never runs leaves its peers waiting: the simulation then ends with their parts
unfinished (absent from ``finish_s``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np
import simpy

from gpusim.errors import SimulationError
from gpusim.hardware.gpu import StreamOp
from gpusim.hardware.node import Node
from gpusim.hardware.transport import NcclPath
from gpusim.kernels.collectives import (
    SendMatrix,
    all_to_all_messages,
    channels_of,
    check_ranks,
    ring_plan,
    send_matrix,
)
from gpusim.kernels.nccl import NcclProtocolModel
from gpusim.spec.profile import NcclProtocol

__all__ = [
    "AllGather",
    "AllToAll",
    "Collective",
    "ReduceScatter",
    "RingAllReduce",
    "RingCollective",
    "all_gather",
    "all_to_all",
    "reduce_scatter",
    "ring_all_reduce",
]


class Collective(ABC):
    """One collective call across ``ranks`` (GPU ids of ``node``).

    After the run, ``entered_s[rank]`` is when the rank's kernel got its SMs and started,
    ``finish_s[rank]`` when its part completed (and its SMs were returned),
    ``bytes_sent_B`` the data bytes delivered over the network by all ranks together (local
    copies and protocol flags excluded) and ``bytes_received_B[rank]`` those delivered to
    ``rank``.
    """

    def __init__(
        self, node: Node, ranks: Sequence[str], *, name: str, sms: int, setup_s: float
    ) -> None:
        self.node = node
        self.ranks = check_ranks(ranks)
        missing = [r for r in self.ranks if r not in node.gpus]
        if missing:
            raise SimulationError(f"collective '{name}': no GPU {missing} in this node")
        max_sms = min(node.gpus[r].rates.sm_count for r in self.ranks)
        if not 0 <= sms <= max_sms:
            raise ValueError(f"collective '{name}': sms must be in [0, {max_sms}], got {sms}")
        if not setup_s >= 0:
            raise ValueError(f"collective '{name}': setup_s must be non-negative, got {setup_s}")
        self.name = name
        self.sms = sms
        self.setup_s = setup_s
        self.entered_s: dict[str, float] = {}
        self.finish_s: dict[str, float] = {}
        self.bytes_sent_B = 0.0
        self.bytes_received_B = dict.fromkeys(self.ranks, 0.0)
        self.model = NcclProtocolModel.from_profile(node.profile)
        self.latency_s = 0.0
        """The call's fixed protocol latency, paid on entry after ``setup_s`` (subclasses)."""
        self._env = node.sim.env
        self._index = {r: i for i, r in enumerate(self.ranks)}
        self._started: set[str] = set()
        self._posted: set[str] = set()
        self._complete = {r: self._env.event() for r in self.ranks}

    def op(self, rank: str) -> StreamOp:
        """The stream operation for ``rank``'s part, to submit on a stream of that rank's GPU
        (``Stream.submit(name, op, ready_delay_s)``). Each rank's op runs once."""
        if rank not in self._index:
            raise ValueError(f"'{rank}' is not a rank of collective '{self.name}'")
        return lambda: self._run(rank)

    def _run(self, rank: str) -> Generator[simpy.Event, Any, None]:
        if rank in self._started:
            raise SimulationError(f"rank '{rank}' entered collective '{self.name}' twice")
        self._started.add(rank)
        gpu = self.node.gpus[rank]
        if self.sms:
            yield from gpu.occupy_sms(self.sms)
        self.entered_s[rank] = float(self._env.now)
        if self.setup_s + self.latency_s > 0:
            yield self._env.timeout(self.setup_s + self.latency_s)
        self._posted.add(rank)
        self._on_posted(rank)
        yield self._complete[rank]
        self.finish_s[rank] = float(self._env.now)
        if self.sms:
            gpu.vacate_sms(self.sms)

    @abstractmethod
    def _on_posted(self, rank: str) -> None:
        """``rank`` has paid its setup: start whatever can start now."""

    def _part_done(self, rank: str) -> None:
        self._complete[rank].succeed()

    def _send(
        self, path: NcclPath, size_B: float, protocol: NcclProtocol, then: Callable[[], None]
    ) -> None:
        """One message: a fluid flow per leg of ``path``, each waiting the protocol's step
        latency and carrying its wire bytes; ``then`` runs when the last leg is done."""
        hop_s = self.model.hop_s(path.hardware, protocol)
        wire_B = self.model.wire_B(protocol, size_B)
        label = f"{self.name} {path.src}->{path.dst} {path.transport.value}/{protocol.value}"
        legs_left = [len(path.legs)]

        def leg_done(_ev: simpy.Event) -> None:
            legs_left[0] -= 1
            if legs_left[0] == 0:
                self.bytes_sent_B += size_B
                self.bytes_received_B[path.dst] += size_B
                then()

        for leg in path.legs:
            done = self.node.network.transfer(leg.resources, wire_B, hop_s, label=label)
            done.callbacks.append(leg_done)


class AllToAll(Collective):
    """Direct all-to-all (NCCL's p2p send/recv to every peer at once): ``send_B[i][j]`` bytes
    from ``ranks[i]`` to ``ranks[j]`` start as soon as both have been posted. Zero entries (and
    the diagonal, a free local copy) move nothing and create no dependency between the pair."""

    def __init__(
        self,
        node: Node,
        ranks: Sequence[str],
        send_B: SendMatrix,
        *,
        name: str,
        sms: int,
        setup_s: float,
    ) -> None:
        super().__init__(node, ranks, name=name, sms=sms, setup_s=setup_s)
        self.send_B = send_matrix(send_B, len(self.ranks))
        channels = channels_of(node.fabric, sms)
        msgs = all_to_all_messages(node.fabric, self.ranks, self.send_B, channels, self.model)
        self._messages = {(self._index[m.path.src], self._index[m.path.dst]): m for m in msgs}
        self.latency_s = self.model.call_latency_s(m.protocol for m in msgs)
        nonzero = self.send_B > 0
        self._pending = {
            r: int(np.count_nonzero(nonzero[i, :]) + np.count_nonzero(nonzero[:, i]))
            for i, r in enumerate(self.ranks)
        }

    def _on_posted(self, rank: str) -> None:
        i = self._index[rank]
        m = self.send_B
        for j, peer in enumerate(self.ranks):
            if j == i or peer not in self._posted:
                continue
            if m[i, j] > 0:
                self._start(i, j)
            if m[j, i] > 0:
                self._start(j, i)
        if self._pending[rank] == 0:
            self._part_done(rank)

    def _start(self, i: int, j: int) -> None:
        msg = self._messages[(i, j)]
        self._send(msg.path, msg.size_B, msg.protocol, lambda: self._arrived(i, j))

    def _arrived(self, i: int, j: int) -> None:
        for k in (i, j):
            rank = self.ranks[k]
            self._pending[rank] -= 1
            if self._pending[rank] == 0:
                self._part_done(rank)


class RingCollective(Collective):
    """Ring collective over a buffer of ``size_B`` bytes: ``passes x (R-1)`` steps, in each of
    which every rank sends ``size_B / R`` bytes to its successor (the next rank in ``ranks``,
    the last sending to the first) with the protocol NCCL's tuner picks for the whole call. A
    rank starts step ``s+1`` once its step-``s`` send is done and its step-``s`` receive from
    its predecessor has arrived; its first send also waits for the successor to be posted. One
    rank, or zero bytes, moves nothing. The reduction arithmetic of reduce-scatter and
    all-reduce is not modelled (it hides under the copies)."""

    passes = 1

    def __init__(
        self,
        node: Node,
        ranks: Sequence[str],
        size_B: float,
        *,
        name: str,
        sms: int,
        setup_s: float,
    ) -> None:
        super().__init__(node, ranks, name=name, sms=sms, setup_s=setup_s)
        if not size_B >= 0:
            raise ValueError(f"collective '{name}': size_B must be non-negative, got {size_B}")
        n = len(self.ranks)
        self.size_B = float(size_B)
        self.chunk_B = self.size_B / n
        steps = self.passes * (n - 1) if self.size_B > 0 else 0
        self.plan = ring_plan(node.fabric, self.ranks, steps, self.chunk_B, self.model)
        self.steps = self.plan.steps
        if self.steps:
            self.latency_s = self.model.base_latency_s[self.plan.protocol]
        self._step = dict.fromkeys(self.ranks, 0)  # steps completed
        self._sent = dict.fromkeys(self.ranks, 0)  # sends delivered
        self._received = dict.fromkeys(self.ranks, 0)  # receives arrived
        self._sending: set[str] = set()

    def _succ(self, rank: str) -> str:
        return self.ranks[(self._index[rank] + 1) % len(self.ranks)]

    def _pred(self, rank: str) -> str:
        return self.ranks[self._index[rank] - 1]

    def _on_posted(self, rank: str) -> None:
        if self.steps == 0:
            self._part_done(rank)
            return
        self._try_send(rank)
        self._try_send(self._pred(rank))

    def _try_send(self, rank: str) -> None:
        succ = self._succ(rank)
        if (
            rank in self._sending
            or rank not in self._posted
            or succ not in self._posted
            or self._step[rank] >= self.steps
            or self._sent[rank] != self._step[rank]
        ):
            return
        self._sending.add(rank)
        path = self.plan.paths[self._index[rank]]
        self._send(path, self.chunk_B, self.plan.protocol, lambda: self._delivered(rank))

    def _delivered(self, rank: str) -> None:
        self._sending.discard(rank)
        succ = self._succ(rank)
        self._sent[rank] += 1
        self._received[succ] += 1
        self._advance(rank)
        self._advance(succ)

    def _advance(self, rank: str) -> None:
        # At most one send is outstanding, so a rank completes at most one step per delivery.
        if self._step[rank] >= self.steps:
            return
        if min(self._sent[rank], self._received[rank]) > self._step[rank]:
            self._step[rank] += 1
            if self._step[rank] == self.steps:
                self._part_done(rank)
            else:
                self._try_send(rank)


class RingAllReduce(RingCollective):
    """Ring all-reduce of ``size_B`` bytes: ``2(R-1)`` steps (reduce-scatter, then
    all-gather)."""

    passes = 2


class AllGather(RingCollective):
    """Ring all-gather whose output is ``size_B`` bytes on every rank, each rank contributing
    ``size_B / R``: ``R-1`` steps, so every rank receives ``(R-1)/R x size_B``."""


class ReduceScatter(RingCollective):
    """Ring reduce-scatter whose input is ``size_B`` bytes on every rank, each keeping
    ``size_B / R`` reduced: ``R-1`` steps."""


def all_to_all(
    node: Node,
    ranks: Sequence[str],
    send_B: SendMatrix,
    *,
    sms: int,
    setup_s: float,
    name: str = "alltoall",
) -> AllToAll:
    """A direct all-to-all: ``send_B[i][j]`` bytes from ``ranks[i]`` to ``ranks[j]``."""
    return AllToAll(node, ranks, send_B, name=name, sms=sms, setup_s=setup_s)


def ring_all_reduce(
    node: Node,
    ranks: Sequence[str],
    size_B: float,
    *,
    sms: int,
    setup_s: float,
    name: str = "allreduce",
) -> RingAllReduce:
    """A ring all-reduce of ``size_B`` bytes over ``ranks`` in ring order."""
    return RingAllReduce(node, ranks, size_B, name=name, sms=sms, setup_s=setup_s)


def all_gather(
    node: Node,
    ranks: Sequence[str],
    size_B: float,
    *,
    sms: int,
    setup_s: float,
    name: str = "allgather",
) -> AllGather:
    """A ring all-gather with a ``size_B``-byte output on every rank (nccl-tests' size)."""
    return AllGather(node, ranks, size_B, name=name, sms=sms, setup_s=setup_s)


def reduce_scatter(
    node: Node,
    ranks: Sequence[str],
    size_B: float,
    *,
    sms: int,
    setup_s: float,
    name: str = "reducescatter",
) -> ReduceScatter:
    """A ring reduce-scatter of a ``size_B``-byte input on every rank (nccl-tests' size)."""
    return ReduceScatter(node, ranks, size_B, name=name, sms=sms, setup_s=setup_s)
