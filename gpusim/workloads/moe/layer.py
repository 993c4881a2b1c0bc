"""Geometry shared by every MoE strategy: expert placement, capacity, routed counts, bytes, and
the metrics every strategy reports.

Experts are placed contiguously: GPU g of G holds experts g*E/G .. (g+1)*E/G - 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from gpusim.errors import SimulationError
from gpusim.spec.base import Dtype, storage_bytes
from gpusim.spec.moe import MoELayerWorkload


@dataclass(frozen=True)
class RoutedBatch:
    """Where one forward's tokens go.

    ``counts[g, e]``: tokens of source GPU g routed to expert e and kept (after capacity drops);
    ``dropped``: token-expert assignments dropped for capacity; ``maxvio_batch``: MaxVio of the
    expert loads before dropping ((max load - mean load) / mean load).
    """

    counts: np.ndarray
    dropped: int
    maxvio_batch: float

    @property
    def expert_loads(self) -> np.ndarray:
        """Tokens each expert computes (summed over sources)."""
        loads: np.ndarray = self.counts.sum(axis=0)
        return loads


@dataclass(frozen=True)
class LayerGeometry:
    """Sizes of one MoE layer on G GPUs."""

    gpus: list[str]
    tokens_per_gpu: int
    hidden: int
    intermediate: int
    experts: int
    top_k: int
    capacity_factor: float | None
    dtype: Dtype
    shared_experts: int = 0
    local_experts: int = field(init=False)

    def __post_init__(self) -> None:
        g = len(self.gpus)
        if self.experts % g:
            raise SimulationError(f"{self.experts} experts cannot be spread evenly over {g} GPUs")
        object.__setattr__(self, "local_experts", self.experts // g)

    @classmethod
    def of(cls, wl: MoELayerWorkload, gpus: list[str], dtype: Dtype) -> LayerGeometry:
        """The geometry of a workload on the given GPUs, moving elements of ``dtype``."""
        return cls(
            gpus=gpus,
            tokens_per_gpu=wl.tokens_per_gpu,
            hidden=wl.hidden,
            intermediate=wl.intermediate,
            experts=wl.experts,
            top_k=wl.top_k,
            capacity_factor=wl.capacity_factor,
            dtype=dtype,
            shared_experts=wl.shared_experts,
        )

    @property
    def n_gpus(self) -> int:
        """G."""
        return len(self.gpus)

    @property
    def element_bytes(self) -> int:
        """Bytes per activation element moved and stored."""
        return storage_bytes(self.dtype)

    @property
    def row_bytes(self) -> int:
        """Bytes of one token's activation row (H elements)."""
        return self.hidden * self.element_bytes

    def owner(self, expert: int) -> int:
        """Index (into ``gpus``) of the GPU that holds ``expert``."""
        return expert // self.local_experts

    def capacity(self) -> int | None:
        """Tokens each (source GPU, expert) pair may send: ceil(T/E) x CF x k (FlashMoE's and
        DeepSpeed's per-rank rule), or None when dropless."""
        if self.capacity_factor is None:
            return None
        return math.ceil(
            math.ceil(self.tokens_per_gpu / self.experts) * self.capacity_factor * self.top_k
        )

    def tokens_to_gpu(self, batch: RoutedBatch) -> np.ndarray:
        """``[src, dst]`` routed tokens from each source GPU to each destination GPU."""
        g, lx = self.n_gpus, self.local_experts
        per_dst: np.ndarray = batch.counts.reshape(g, g, lx).sum(axis=2)
        return per_dst

    def useful_remote_bytes(self, batch: RoutedBatch) -> float:
        """Payload that must cross the network: routed rows to remote experts and their results
        back (dispatch + combine)."""
        t = self.tokens_to_gpu(batch)
        remote = float(t.sum() - np.trace(t))
        return 2.0 * remote * self.row_bytes


MOE_METRICS = frozenset(
    {
        "forward_latency_s",
        "makespan_s",
        "throughput_tokens_per_s",
        "sm_utilisation",
        "payload_efficiency",
        "network_payload_B",
        "kernel_launches",
        "tokens_dropped",
        "maxvio_batch",
        "max_expert_load",
    }
)
"""The names :func:`moe_metrics` returns: what every MoE strategy reports."""


def moe_metrics(
    *,
    geometry: LayerGeometry,
    batch: RoutedBatch,
    latency_s: float,
    busy_sm_s: float,
    total_sms: int,
    network_payload_B: float,
    kernel_launches: int,
) -> dict[str, float]:
    """The metrics every MoE strategy reports (see docs/moe.md for definitions).
    ``kernel_launches`` is per GPU per forward (the mean over GPUs)."""
    useful = geometry.useful_remote_bytes(batch)
    return {
        "forward_latency_s": latency_s,
        "makespan_s": latency_s,
        "throughput_tokens_per_s": geometry.tokens_per_gpu * geometry.n_gpus / latency_s,
        "sm_utilisation": busy_sm_s / (total_sms * latency_s),
        "payload_efficiency": useful / network_payload_B if network_payload_B > 0 else 1.0,
        "network_payload_B": network_payload_B,
        "kernel_launches": float(kernel_launches),
        "tokens_dropped": float(batch.dropped),
        "maxvio_batch": batch.maxvio_batch,
        "max_expert_load": float(batch.expert_loads.max()),
    }
