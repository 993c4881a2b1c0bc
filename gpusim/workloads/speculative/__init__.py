"""Speculative decoding (LLMCad and its baselines) with target weights streamed from a slower
memory tier: ``des``/``analytic`` run a ``speculative_decoding`` workload
(docs/speculative_decoding.md)."""

from __future__ import annotations

from gpusim.workloads.speculative.analytic import analytic
from gpusim.workloads.speculative.des import des
from gpusim.workloads.speculative.metrics import METRICS

__all__ = ["METRICS", "analytic", "des"]
