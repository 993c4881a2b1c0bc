"""The metrics of a speculative-decoding run (docs/speculative_decoding.md, Metrics)."""

from __future__ import annotations

from gpusim.result import Outcome
from gpusim.workloads.speculative.setup import Setup
from gpusim.workloads.speculative.strategies import Tally
from gpusim.workloads.speculative.timing import TimeSplit

METRICS = frozenset(
    {
        "generation_time_s",
        "time_per_token_s",
        "tokens_per_s",
        "generated_tokens",
        "verifications",
        "verifications_per_token",
        "accepted_tokens_per_verification",
        "wasted_verifications",
        "draft_steps",
        "draft_step_s",
        "verification_s",
        "provisional_step_s",
        "provisional_tokens_kept",
        "provisional_tokens_discarded",
        "draft_s",
        "verify_compute_s",
        "weight_io_s",
        "provisional_s",
        "idle_s",
        "memory_budget_B",
        "memory_used_B",
        "memory_used_fraction",
        "target_resident_fraction",
        "streamed_bytes_per_pass_B",
    }
)
"""What every run reports, both fidelities, every strategy."""


def _mean(total_s: float, count: float) -> float:
    """``total_s`` per one of ``count`` (0 when there were none)."""
    return total_s / count if count else 0.0


def outcome(
    s: Setup, tally: Tally, split: TimeSplit, total_s: float, link_bytes: dict[str, float]
) -> Outcome:
    """The run's outcome from its tally, time split and generation time."""
    plan = s.plan
    tokens = float(tally.generated)
    metrics = {
        "generation_time_s": total_s,
        "time_per_token_s": total_s / tokens,
        "tokens_per_s": tokens / total_s,
        "generated_tokens": tokens,
        "verifications": float(tally.verifications),
        "verifications_per_token": tally.verifications / tokens,
        "accepted_tokens_per_verification": tokens / tally.verifications,
        "wasted_verifications": float(tally.wasted_verifications),
        "draft_steps": float(tally.draft_steps),
        "provisional_tokens_kept": float(tally.provisional_kept),
        "provisional_tokens_discarded": float(tally.provisional_discarded),
        "draft_step_s": _mean(split.draft_s, tally.draft_steps),
        "verification_s": _mean(split.target_passes_s, tally.verifications),
        "provisional_step_s": _mean(split.provisional_s, split.provisional_steps),
        "memory_budget_B": plan.budget_B,
        "memory_used_B": plan.used_B,
        "memory_used_fraction": plan.used_B / plan.budget_B,
        "target_resident_fraction": plan.resident_layers / plan.layers,
        "streamed_bytes_per_pass_B": plan.streamed_B,
    }
    metrics |= split.metrics(total_s)
    series = {"accepted_per_verification": list(tally.accepted), "alpha": list(tally.alpha)}
    return Outcome(makespan_s=total_s, metrics=metrics, link_bytes=link_bytes, series=series)


__all__ = ["METRICS", "outcome"]
