"""LLMCad's token tree, confidence pacer, self-adaptive fallback and provisional drafting
(llmcad.md sections 2-5).

- The tree is a set of branches (root-to-leaf sequences). Each draft step extends the branch the
  pacer picks, ``argmax_x M C_x / sum_i C_i - T_x`` (LC Eq. 1-2: the branch furthest short of its
  confidence share of the ``M = tree_tokens`` budget), with ``C`` the product of its tokens'
  confidences and ``T`` its length. A second candidate above ``branch_threshold`` opens a new
  branch beside the extended one (while the tree has room).
- After every draft token the tree's cumulative confidence ``T_c = max_i C_i`` is compared with
  ``alpha``; below it (or with a full tree) the target verifies every branch in one pass.
- The longest correct path is kept, plus the target's rectified token at its mismatch; alpha
  then follows Eq. 3 on that (most-matching) branch: halved after an error-free branch, else the
  branch's error fraction.
- Provisional drafting: while the verification loads weights, the draft extends the most
  confident branch; those tokens are kept (as the next tree's first branch, still to be
  verified) when that branch proves error-free, and discarded otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpusim.spec.speculative import SpeculativeDecodingWorkload
from gpusim.workloads.speculative.draft import DraftSampler
from gpusim.workloads.speculative.strategies import Draft, Program, Tally, Verify


@dataclass
class Branch:
    """One root-to-leaf sequence of draft tokens."""

    length: int = 0
    matched: int = 0
    """Leading tokens on the target's path."""
    confidence: float = 1.0
    """Cumulative confidence: the product of its tokens' confidences."""

    @property
    def on_path(self) -> bool:
        """Every token so far is the target's."""
        return self.matched == self.length


def next_alpha(alpha: float, correct: int, total: int) -> float:
    """LC Eq. 3 (= EL Eq. 3) after a verification whose most-matching branch has ``correct`` of
    ``total`` tokens right: ``alpha / 2`` if all are, else ``(total - correct) / total``."""
    if correct == total:
        return 0.5 * alpha
    return (total - correct) / total


def pick_branch(branches: list[Branch], tree_tokens: int) -> int:
    """The pacer's choice: the branch furthest short of its confidence share of the budget
    (``argmax M C_x / sum C - T_x``; the first such branch on ties)."""
    total = sum(b.confidence for b in branches)
    scores = [tree_tokens * b.confidence / total - b.length for b in branches]
    return scores.index(max(scores))


class TokenTree:
    """The draft tree between two verifications."""

    def __init__(self, root: int, first: Branch) -> None:
        self.root = root
        """Output position of the tree's first token."""
        self.branches = [first]
        self.tokens = first.length

    def extend(self, sampler: DraftSampler, threshold: float, room: int) -> None:
        """One draft step on the pacer's branch; a confident second candidate opens a branch
        while the tree has fewer than ``room`` tokens."""
        b = self.branches[pick_branch(self.branches, room)]
        before = Branch(b.length, b.matched, b.confidence)
        token = sampler.token(self.root + before.length, before.on_path)
        b.length += 1
        b.matched += token.on_path
        b.confidence *= token.confidence
        self.tokens += 1
        if token.alternative_confidence > threshold and self.tokens < room:
            self.branches.append(
                Branch(
                    before.length + 1,
                    before.matched + token.alternative_on_path,
                    before.confidence * token.alternative_confidence,
                )
            )
            self.tokens += 1

    def best_confidence(self) -> float:
        """``T_c``: the most confident branch's cumulative confidence."""
        return max(b.confidence for b in self.branches)

    def most_matching(self) -> Branch:
        """The branch with the longest correct prefix (the shorter on ties: fewer errors)."""
        return max(self.branches, key=lambda b: (b.matched, -b.length))

    def most_confident(self) -> Branch:
        """The branch provisional tokens extend."""
        return max(self.branches, key=lambda b: b.confidence)


def provisional_branch(sampler: DraftSampler, root: int, steps: int) -> Branch:
    """The next tree's first branch from ``steps`` kept provisional tokens from output position
    ``root`` (after an accepted prefix: the first is drawn on the path)."""
    b = Branch()
    for i in range(steps):
        token = sampler.token(root + i, b.on_path)
        b.length += 1
        b.matched += token.on_path
        b.confidence *= token.confidence
    return b


def llmcad(wl: SpeculativeDecodingWorkload, tally: Tally, sampler: DraftSampler) -> Program:
    """``llmcad``: grow the tree until ``T_c < alpha`` or it holds ``tree_tokens``, verify, adapt
    alpha, keep or discard the provisional tokens."""
    alpha = wl.alpha_initial
    room = wl.tree_tokens
    tree = TokenTree(0, Branch())
    while tally.generated < wl.generated_tokens:
        remaining = wl.generated_tokens - tally.generated
        limit = min(room, remaining)
        while tree.tokens < limit and not (tree.tokens > 0 and tree.best_confidence() < alpha):
            yield Draft(1)
            tally.draft_steps += 1
            tree.extend(sampler, wl.branch_threshold, limit)
        checked = tree.tokens
        provisional_max = room if wl.provisional else 0
        steps = yield Verify(checked, provisional_max)
        best = tree.most_matching()
        tally.verified(best.length, best.matched, remaining)
        alpha = next_alpha(alpha, best.matched, best.length)
        tally.alpha.append(alpha)
        keep = steps > 0 and tree.most_confident().on_path and tally.generated < wl.generated_tokens
        if keep:
            tally.provisional_kept += steps
            first = provisional_branch(sampler, tally.generated, steps)
        else:
            tally.provisional_discarded += steps
            first = Branch()
        tree = TokenTree(tally.generated, first)


__all__ = ["Branch", "TokenTree", "llmcad", "next_alpha", "pick_branch", "provisional_branch"]
