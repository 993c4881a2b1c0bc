"""NCCL's protocol model: which protocol a call uses and what each costs in latency and bandwidth.

The parameters are NCCL's own tuner constants (``src/graph/tuning.cc``) held in the calibration
profile's ``nccl`` section. A call with protocol ``p`` over ``steps`` pipeline steps of
``chunk_B`` data bytes each costs, alone on the fabric,

``base_latency[p] + steps x (hop_latency[hw][p] + chunk_B / (bandwidth x bandwidth_fraction[p]))``

where ``bandwidth`` is the path's achievable capacity (the fabric's, which holds the profile's
link efficiency). Ring collectives (all-gather, reduce-scatter, all-reduce) take the protocol
that minimises this time, as NCCL's tuner does; point-to-point calls (all-to-all) use LL up to
``p2p_ll_threshold_B`` bytes per channel and Simple above (``src/enqueue.cc``), NCCL's rule for
send/receive. See ``docs/collectives.md``.

Pure (no SimPy).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from gpusim.spec.profile import CalibrationProfile, NcclHardware, NcclProtocol
from gpusim.units import us_to_s

__all__ = ["NcclProtocolModel"]

RING_PROTOCOLS = (NcclProtocol.ll, NcclProtocol.ll128, NcclProtocol.simple)
"""The protocols NCCL's tuner weighs for ring collectives."""


@dataclass(frozen=True)
class NcclProtocolModel:
    """The ``nccl`` section of a profile, in seconds and bytes."""

    base_latency_s: dict[NcclProtocol, float]
    hop_latency_s: dict[NcclHardware, dict[NcclProtocol, float]]
    bandwidth_fraction: dict[NcclProtocol, float]
    p2p_ll_threshold_B: float
    host_call_s: float

    @classmethod
    def from_profile(cls, profile: CalibrationProfile) -> NcclProtocolModel:
        """Read ``profile.nccl``."""
        n = profile.nccl
        return cls(
            base_latency_s={p: us_to_s(m.value) for p, m in n.base_latency_us.items()},
            hop_latency_s={
                hw: {p: us_to_s(m.value) for p, m in row.items()}
                for hw, row in n.hop_latency_us.items()
            },
            bandwidth_fraction={p: m.value for p, m in n.bandwidth_fraction.items()},
            p2p_ll_threshold_B=n.p2p_ll_threshold_B.value,
            host_call_s=us_to_s(n.host_call_us.value),
        )

    def wire_B(self, protocol: NcclProtocol, data_B: float) -> float:
        """Bytes on the wire that carry ``data_B`` data bytes under ``protocol`` (flags and
        line padding included)."""
        return data_B / self.bandwidth_fraction[protocol]

    def hop_s(self, hardware: NcclHardware, protocol: NcclProtocol) -> float:
        """Latency of one pipeline step over ``hardware`` under ``protocol``."""
        return self.hop_latency_s[hardware][protocol]

    def ring_time_s(
        self,
        protocol: NcclProtocol,
        hardware: NcclHardware,
        steps: int,
        chunk_B: float,
        bandwidth_Bps: float,
    ) -> float:
        """Time of ``steps`` ring steps of ``chunk_B`` each at ``bandwidth_Bps``, latency
        included (no host cost, no setup)."""
        if steps == 0 or chunk_B == 0:
            return 0.0
        step_s = self.hop_s(hardware, protocol) + self.wire_B(protocol, chunk_B) / bandwidth_Bps
        return self.base_latency_s[protocol] + steps * step_s

    def ring_protocol(
        self, hardware: NcclHardware, steps: int, chunk_B: float, bandwidth_Bps: float
    ) -> NcclProtocol:
        """The protocol NCCL's tuner picks for a ring call: the least estimated time at the
        path's uncontended bandwidth (ties to the later, bulkier protocol)."""
        best, best_s = NcclProtocol.simple, math.inf
        for p in RING_PROTOCOLS:
            t = self.ring_time_s(p, hardware, steps, chunk_B, bandwidth_Bps)
            if t <= best_s:
                best, best_s = p, t
        return best

    def p2p_protocol(self, size_B: float, channels: int) -> NcclProtocol:
        """NCCL's send/receive rule: LL when ``size_B <= channels x p2p_ll_threshold_B``,
        Simple otherwise."""
        if size_B <= max(channels, 1) * self.p2p_ll_threshold_B:
            return NcclProtocol.ll
        return NcclProtocol.simple

    def call_latency_s(self, protocols: Iterable[NcclProtocol]) -> float:
        """The fixed latency of one call whose messages use ``protocols``: the largest base
        latency among them (0 when it moves nothing)."""
        return max((self.base_latency_s[p] for p in protocols), default=0.0)
