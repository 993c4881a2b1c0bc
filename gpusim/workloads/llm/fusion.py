"""SKIP's kernel-fusion recommender on the simulated kernel trace: find deterministic
back-to-back kernel chains and merge each occurrence into one kernel costed by the kernel model.

Mining (one forward pass and its generate epilogue, in launch order; a kernel's ``kind`` stands
for its CUDA symbol): kernel kind A links to kind B when every launch of A is immediately
followed by a launch of B and every launch of B immediately follows one of A (the pair's
proximity is certain both ways, so merging every occurrence is consistent). A chain is a maximal
run of linked launches; only memory-bound kernels (elementwise, copies, reductions) join one,
because only they merge into a kernel the elementwise model can cost: GEMMs, attention and
collectives end chains, as does a host read.

Merging: the chain becomes one memory-bound kernel that reads each tensor from outside the chain
once and writes only what something after the chain reads, or what nothing in the pass reads
(a KV cache, statistics kept for later): intermediates stay on chip. It removes m - 1 launches
and their framework ops, m - 1 kernel floors and the intermediates' bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gpusim.execution.host_costs import OpKind
from gpusim.workloads.llm.ops import Collective, Kernel, Op, OpList, TensorUse, ToHost


@dataclass(frozen=True)
class FusionResult:
    """The fused operations, and the chains merged (each as its kernel kinds, once per kind
    sequence) with how many launches the fusion removed."""

    ops: list[Op]
    chains: tuple[tuple[str, ...], ...]
    removed: int


def _trace_kind(op: Op) -> str | None:
    """The op's kernel kind in the trace (None: a host-only op, absent from the kernel trace)."""
    if isinstance(op, Kernel):
        return op.kind
    if isinstance(op, Collective):
        return f"nccl_{op.collective}"
    if isinstance(op, ToHost):
        return "memcpy_dtoh"
    return None


def linked_pairs(ops: Sequence[Op]) -> set[tuple[str, str]]:
    """The deterministic pairs (A, B) of memory-bound kernel kinds (see the module docstring)."""
    trace = [k for k in (_trace_kind(op) for op in ops) if k is not None]
    fusable = {op.kind for op in ops if isinstance(op, Kernel) and op.memory_bound}
    after: dict[str, set[str | None]] = {}
    before: dict[str, set[str | None]] = {}
    for i, kind in enumerate(trace):
        after.setdefault(kind, set()).add(trace[i + 1] if i + 1 < len(trace) else None)
        before.setdefault(kind, set()).add(trace[i - 1] if i > 0 else None)
    pairs = set()
    for a, nexts in after.items():
        if len(nexts) != 1:
            continue
        (b,) = nexts
        if b is None or b == a or a not in fusable or b not in fusable:
            continue
        if before[b] == {a}:
            pairs.add((a, b))
    return pairs


def fuse(ops: Sequence[Op], into: OpList) -> FusionResult:
    """Merge every chain of linked memory-bound kernels in ``ops`` (``into`` costs the merged
    kernels and receives nothing)."""
    pairs = linked_pairs(ops)
    last_read: dict[str, int] = {}
    for i, op in enumerate(ops):
        if isinstance(op, Kernel):
            for t, _ in op.reads:
                last_read[t] = i
    out: list[Op] = []
    chains: dict[tuple[str, ...], None] = {}
    removed = 0
    i = 0
    while i < len(ops):
        op = ops[i]
        if not (isinstance(op, Kernel) and op.memory_bound):
            out.append(op)
            i += 1
            continue
        members, hosts, j = [op], [], i + 1
        last = i
        while j < len(ops):
            nxt = ops[j]
            if _trace_kind(nxt) is None:
                hosts.append(j)
            elif isinstance(nxt, Kernel) and (members[-1].kind, nxt.kind) in pairs:
                members.append(nxt)
                last = j
            else:
                break
            j += 1
        if len(members) == 1:
            out.append(op)
            i += 1
            continue
        out.append(_merged(members, last, last_read, into))
        chains[tuple(k.kind for k in members)] = None
        removed += len(members) - 1
        # host-only ops inside the chain stay, after the fused kernel; those after its last
        # kernel are examined again by the loop
        out.extend(ops[h] for h in hosts if h < last)
        i = last + 1
    return FusionResult(out, tuple(chains), removed)


def _merged(kernels: list[Kernel], end: int, last_read: dict[str, int], into: OpList) -> Kernel:
    """One kernel for the chain ``kernels`` ending at op index ``end``."""
    written: set[str] = set()
    reads: dict[str, float] = {}
    writes: dict[str, float] = {}
    for k in kernels:
        for t, b in k.reads:
            if t not in written:
                reads[t] = max(reads.get(t, 0.0), b)
        for t, b in k.writes:
            written.add(t)
            writes[t] = max(writes.get(t, 0.0), b)
    read_inside = {t for k in kernels for t, _ in k.reads}
    kept: dict[str, float] = {
        t: b for t, b in writes.items() if t not in read_inside or last_read.get(t, -1) > end
    }
    name = "fused[" + "+".join(k.kind for k in kernels) + "]"
    kind = (
        OpKind.reduction
        if any(k.op_kind == OpKind.reduction for k in kernels)
        else OpKind.elementwise
    )
    r: tuple[TensorUse, ...] = tuple(reads.items())
    w: tuple[TensorUse, ...] = tuple(kept.items())
    return into.ew_kernel(name, r, w, kind)
