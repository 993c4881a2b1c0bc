"""The operations of one forward pass as the host issues them, before they become program steps:
kernels (with the tensors they read and write, for fusion), view ops, Python module calls,
tensor-parallel collectives and host reads.

A kernel's ``kind`` stands for its CUDA symbol (``mul_bf16``, ``copy_bf16_fp32``): two launches of
the same kind are the same kernel in a profiler trace, which is what the fusion recommender
mines (:mod:`gpusim.workloads.llm.fusion`).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from typing import Literal

from gpusim.execution.host_costs import OpKind, RuntimeCall
from gpusim.hardware.rates import GPURates
from gpusim.kernels import kernel_cost, kernel_costs
from gpusim.kernels.attention import AttentionShape, attention_cost
from gpusim.kernels.cost import KernelCost
from gpusim.kernels.grouped_gemm import grouped_gemm_cost
from gpusim.spec.base import Dtype, storage_bytes
from gpusim.spec.llm import LlmWeights
from gpusim.spec.profile import InstructionPath
from gpusim.spec.workload import ElementwiseOp, GemmOp, SpmmOp

TensorUse = tuple[str, float]
"""A tensor (its id within one forward) and the bytes of it a kernel moves."""


@dataclass(frozen=True)
class Kernel:
    """One kernel launch of a framework op (``new_op``: the first kernel of that op)."""

    kind: str
    cost: KernelCost
    op_kind: OpKind = OpKind.elementwise
    call: RuntimeCall = RuntimeCall.launch_kernel
    reads: tuple[TensorUse, ...] = ()
    writes: tuple[TensorUse, ...] = ()
    memory_bound: bool = False
    """An elementwise, copy or reduction kernel that the fusion pass may merge."""


@dataclass(frozen=True)
class Host:
    """Host work launching nothing: ``count`` view ops or Python module calls."""

    kind: Literal["view", "python"]
    count: int = 1


@dataclass(frozen=True)
class Collective:
    """A tensor-parallel collective on ``size_B`` bytes per rank (all-reduce of the buffer, or
    all-gather whose output is ``size_B``)."""

    name: str
    collective: Literal["all_reduce", "all_gather"]
    size_B: float


@dataclass(frozen=True)
class ToHost:
    """A value the host reads (``.item()`` of a flag): a device-to-host copy and a sync."""

    size_B: int
    op_kind: OpKind = OpKind.reduction


Op = Kernel | Host | Collective | ToHost


@dataclass
class OpList:
    """Operations appended in issue order, with the kernel costs of one GPU."""

    rates: GPURates
    dtype: Dtype
    cache: dict[Hashable, KernelCost]
    """Kernel costs already computed, shared by the op lists of one run: by kernel op, and
    named by (op, kernel kind, sizes) (decode steps repeat the same kernels thousands of
    times)."""
    ops: list[Op] = field(default_factory=list)
    weights: LlmWeights | None = None
    """How the linear layers' weights are stored (dense when absent)."""
    spmm_cache: dict[Hashable, tuple[KernelCost, ...]] = field(default_factory=dict)
    """The kernels of each sparse linear, computed once per run like ``cache``."""

    def ew(
        self,
        kind: str,
        reads: tuple[TensorUse, ...],
        writes: tuple[TensorUse, ...],
        op_kind: OpKind = OpKind.elementwise,
        *,
        call: RuntimeCall = RuntimeCall.launch_kernel,
    ) -> None:
        """Append a memory-bound kernel moving the bytes of ``reads`` and ``writes``."""
        self.ops.append(self.ew_kernel(kind, reads, writes, op_kind, call=call))

    def ew_kernel(
        self,
        kind: str,
        reads: tuple[TensorUse, ...],
        writes: tuple[TensorUse, ...],
        op_kind: OpKind = OpKind.elementwise,
        *,
        call: RuntimeCall = RuntimeCall.launch_kernel,
    ) -> Kernel:
        """The memory-bound kernel moving the bytes of ``reads`` and ``writes`` (costed once per
        byte count)."""
        read_B, write_B = round(sum(b for _, b in reads)), round(sum(b for _, b in writes))
        key = ("ew", kind, read_B, write_B)
        cost = self.cache.get(key)
        if cost is None:
            op = ElementwiseOp(bytes_read=read_B, bytes_written=write_B)
            cost = self.cache[key] = replace(self._cost(op), name=kind)
        fusable = call == RuntimeCall.launch_kernel  # a library call (cuBLAS) is not fused
        return Kernel(kind, cost, op_kind, call, reads, writes, memory_bound=fusable)

    def gemm(self, kind: str, m: int, n: int, k: int, a: str, out: str) -> None:
        """A linear layer: a cuBLAS GEMM (``aten::linear`` / ``addmm``) reading ``a``."""
        key = ("gemm", kind, m, n, k)
        cost = self.cache.get(key)
        if cost is None:
            plain = self._cost(GemmOp(m=m, n=n, k=k, dtype=self.dtype))
            cost = self.cache[key] = replace(plain, name=f"{kind}_{plain.name}")
        el = float(self.dtype_bytes)
        self.ops.append(
            Kernel(
                kind,
                cost,
                call=RuntimeCall.cublas,
                reads=((a, m * k * el),),
                writes=((out, m * n * el),),
            )
        )

    def bmm(self, kind: str, batch: int, m: int, n: int, k: int, a: str, b: str, out: str) -> None:
        """A batched matrix product (``torch.matmul`` of 4-D tensors, cuBLAS's strided batched
        GEMM): ``batch`` independent ``[m x k] @ [k x n]`` products, each with operands of its
        own, costed as one grouped GEMM of ``batch`` equal problems (one grid over every
        problem's tiles: :func:`gpusim.kernels.grouped_gemm.grouped_gemm_cost`)."""
        key = ("bmm", kind, batch, m, n, k)
        cost = self.cache.get(key)
        if cost is None:
            cost = self.cache[key] = grouped_gemm_cost(
                [m] * batch, n, k, self.dtype, InstructionPath.wgmma, self.rates, kind
            )
        el = float(self.dtype_bytes)
        reads = ((a, batch * m * k * el), (b, batch * k * n * el))
        self.ops.append(
            Kernel(
                kind,
                cost,
                call=RuntimeCall.cublas,
                reads=reads,
                writes=((out, batch * m * n * el),),
            )
        )

    def linear(self, kind: str, m: int, n: int, k: int, a: str, out: str) -> None:
        """A linear layer's weight of ``n`` outputs and ``k`` inputs on ``m`` rows: a cuBLAS GEMM
        (:meth:`gemm`), or with Tiled-CSL weights Flash-LLM's SpMM, the weight as its sparse
        ``n x k`` operand times the ``k x m`` activations: its LSCD kernel and, when it splits
        K, its reduction kernel (direct launches, never fused)."""
        w = self.weights
        if w is None or w.format == "dense":
            self.gemm(kind, m, n, k, a, out)
            return
        key = ("spmm", kind, m, n, k)
        costs = self.spmm_cache.get(key)
        if costs is None:
            op = SpmmOp(m=n, k=k, n=m, sparsity=w.sparsity, pattern=w.pattern)
            costs = self.spmm_cache[key] = kernel_costs(op, self.rates)
        el = float(self.dtype_bytes)
        *first, last = costs
        for cost in first:
            self.ops.append(Kernel(cost.name, cost, reads=((a, m * k * el),)))
        reads = () if first else ((a, m * k * el),)
        self.ops.append(Kernel(last.name, last, reads=reads, writes=((out, m * n * el),)))

    def attention(self, shape: AttentionShape, q: str, kv: str, out: str) -> None:
        """The fused attention kernel (``aten::scaled_dot_product_attention``)."""
        name = "flash_attn_fwd" if shape.q_tokens > 1 else "flash_attn_decode"
        cost = attention_cost(shape, self.rates, name)
        reads = ((q, shape.q_bytes), (kv, shape.kv_bytes))
        self.ops.append(Kernel(name, cost, reads=reads, writes=((out, shape.q_bytes),)))

    def views(self, count: int = 1) -> None:
        """``count`` view ops (view, transpose, split, unsqueeze, slicing)."""
        self.ops.append(Host("view", count))

    def modules(self, count: int = 1) -> None:
        """``count`` Python calls (an ``nn.Module.__call__``, a generate helper)."""
        self.ops.append(Host("python", count))

    @property
    def dtype_bytes(self) -> int:
        """Bytes of one element of the model's dtype."""
        return storage_bytes(self.dtype)

    def _cost(self, op: GemmOp | ElementwiseOp) -> KernelCost:
        """The kernel model's cost of ``op``, computed once per run (decode steps repeat the
        same GEMMs and elementwise sizes thousands of times)."""
        cost = self.cache.get(op)
        if cost is None:
            cost = self.cache[op] = kernel_cost(op, self.rates)
        return cost
