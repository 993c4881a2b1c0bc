"""The strategies as programs of draft and verification requests, shared by both fidelities.

A strategy is a generator: it yields :class:`Draft` (one draft forward pass over ``tokens`` new
tokens) and :class:`Verify` (one target pass over ``tokens`` draft tokens; up to
``provisional_max`` provisional draft steps may run while its weights load) and is sent back how
many provisional steps ran (0 after a draft). The driver of a fidelity decides how long each
request takes; the strategy decides, from the seeded draft model, which tokens are accepted. It
records tokens and verifications in a :class:`Tally`.

Accepted tokens per verification: the longest prefix of draft tokens on the target's path, plus
the target's own (rectified) token at the first mismatch. A fully correct draft earns no extra
token (the reference's rule, llmcad.md section 3), so with correctness 0 every verification
yields one token and with correctness 1 exactly the draft tokens checked.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field

from gpusim.spec.speculative import SpeculativeDecodingWorkload
from gpusim.workloads.speculative.draft import DraftSampler


@dataclass(frozen=True)
class Draft:
    """One draft forward pass over ``tokens`` new tokens (SpecInfer batches its branches)."""

    tokens: int


@dataclass(frozen=True)
class Verify:
    """One target pass over ``tokens`` tokens; at most ``provisional_max`` provisional draft
    steps while its weights load (LLMCad only)."""

    tokens: int
    provisional_max: int = 0


Request = Draft | Verify
Program = Generator[Request, int, None]


@dataclass
class Tally:
    """Token accounting of one run."""

    generated: int = 0
    verifications: int = 0
    wasted_verifications: int = 0
    """Verifications that checked draft tokens and accepted none (only the rectified token)."""
    draft_steps: int = 0
    provisional_kept: int = 0
    provisional_discarded: int = 0
    accepted: list[float] = field(default_factory=list)
    """Tokens each verification added."""
    alpha: list[float] = field(default_factory=list)
    """LLMCad's fallback threshold after each verification."""

    def verified(self, checked: int, matched: int, remaining: int) -> int:
        """Record a verification of ``checked`` draft tokens of which ``matched`` lead on the
        path; returns the tokens it adds (the rectified token after a mismatch), at most
        ``remaining``."""
        added = min(remaining, matched + (1 if matched < checked or checked == 0 else 0))
        self.verifications += 1
        self.generated += added
        self.accepted.append(float(added))
        if checked > 0 and matched == 0:
            self.wasted_verifications += 1
        return added


def target_only(wl: SpeculativeDecodingWorkload, tally: Tally) -> Program:
    """``std`` and ``std_pl``: one target pass per token."""
    while tally.generated < wl.generated_tokens:
        yield Verify(1)
        tally.verified(0, 0, wl.generated_tokens - tally.generated)


def vanilla(wl: SpeculativeDecodingWorkload, tally: Tally, sampler: DraftSampler) -> Program:
    """``sp``: ``draft_length`` draft steps, one verification of them."""
    while tally.generated < wl.generated_tokens:
        remaining = wl.generated_tokens - tally.generated
        k = min(wl.draft_length, remaining)
        for _ in range(k):
            yield Draft(1)
            tally.draft_steps += 1
        yield Verify(k)
        tally.verified(k, sampler.chain(tally.generated, k), remaining)


def specinfer(wl: SpeculativeDecodingWorkload, tally: Tally, sampler: DraftSampler) -> Program:
    """``specinfer``: ``tree_width`` chains that differ in their first token (the draft's ranked
    candidates after one pass over the last token), each continued greedily one level at a time
    (a batched pass over the chains' ``tree_width`` newest tokens), then verified in one pass."""
    width = wl.tree_width
    while tally.generated < wl.generated_tokens:
        remaining = wl.generated_tokens - tally.generated
        depth = min(wl.tree_depth, remaining)
        for level in range(depth):
            yield Draft(1 if level == 0 else width)
            tally.draft_steps += 1
        yield Verify(width * depth)
        root = tally.generated
        hit = sampler.ranked_first(root, width)
        matched = 0 if hit < 0 else 1 + sampler.chain(root + 1, depth - 1)
        tally.verified(depth, matched, remaining)


__all__ = ["Draft", "Program", "Request", "Tally", "Verify", "specinfer", "target_only", "vanilla"]
