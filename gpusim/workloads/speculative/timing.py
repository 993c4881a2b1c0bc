"""Closed forms of one target pass with streamed weights, and the time split of a run.

With ``r`` resident layers first and ``s`` streamed ones, each layer computing for ``c`` and
loading for ``l`` (route latency + bytes / the route's bottleneck bandwidth, host memory
included):

- ``std`` (no pipeline): ``r c + s (l + c)``: each streamed layer is loaded, then computed;
- pipelined (``std_pl`` and every verification): loads start with the pass, one per free
  buffer; streamed layer ``k`` loads once layer ``k - 1`` has loaded and buffer ``k - buffers``
  is free again, and computes once it has loaded and the layer before has computed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PassShape:
    """One target pass: resident and streamed layers, per-layer compute and load times."""

    resident_layers: int
    streamed_layers: int
    layer_compute_s: float
    layer_load_s: float
    buffers: int
    streamed_compute_s: float
    """A streamed layer's compute (a pipelined pass's loads may take host CPU from it)."""

    @property
    def compute_s(self) -> float:
        """Every layer's compute."""
        return (
            self.resident_layers * self.layer_compute_s
            + self.streamed_layers * self.streamed_compute_s
        )


def sequential_pass_s(p: PassShape) -> float:
    """``std``: load then compute each streamed layer, after the resident ones."""
    return p.resident_layers * p.layer_compute_s + p.streamed_layers * (
        p.layer_load_s + p.streamed_compute_s
    )


def pipelined_pass_s(p: PassShape) -> float:
    """Loads overlap compute through ``buffers`` layer buffers (module docstring)."""
    compute_end = p.resident_layers * p.layer_compute_s
    load_end = 0.0
    freed: list[float] = []  # compute end of each streamed layer: when its buffer frees
    for k in range(p.streamed_layers):
        free = freed[k - p.buffers] if k >= p.buffers else 0.0
        load_end = max(load_end, free) + p.layer_load_s
        compute_end = max(compute_end, load_end) + p.streamed_compute_s
        freed.append(compute_end)
    return compute_end


@dataclass
class TimeSplit:
    """Where the run's time went: a partition of the generation time."""

    draft_s: float = 0.0
    """Draft passes outside verifications."""
    verify_compute_s: float = 0.0
    """Target compute."""
    weight_io_s: float = 0.0
    """Target passes waiting on weight loads with nothing computing."""
    provisional_s: float = 0.0
    """Provisional draft passes during weight loads."""
    provisional_steps: float = 0.0
    """Provisional draft steps run, in whole steps (a step cut short when the last load ends
    counts its share of the draft's layers)."""
    target_passes_s: float = 0.0
    """Every target pass, start to end (provisional drafting inside included): not part of
    the partition, the total behind the mean verification time."""

    def verification(
        self, pass_s: float, compute_s: float, provisional_s: float, provisional_steps: float
    ) -> None:
        """Account one target pass of ``pass_s``: its compute, the ``provisional_steps`` of
        provisional drafting inside it (``provisional_s``), and the rest as waiting on
        weights."""
        self.target_passes_s += pass_s
        self.provisional_steps += provisional_steps
        self.verify_compute_s += compute_s
        self.provisional_s += provisional_s
        self.weight_io_s += max(0.0, pass_s - compute_s - provisional_s)

    def metrics(self, total_s: float) -> dict[str, float]:
        """The split as metrics, ``idle_s`` the remainder of ``total_s``."""
        busy = self.draft_s + self.verify_compute_s + self.weight_io_s + self.provisional_s
        return {
            "draft_s": self.draft_s,
            "verify_compute_s": self.verify_compute_s,
            "weight_io_s": self.weight_io_s,
            "provisional_s": self.provisional_s,
            "idle_s": max(0.0, total_s - busy),
        }


__all__ = ["PassShape", "TimeSplit", "pipelined_pass_s", "sequential_pass_s"]
