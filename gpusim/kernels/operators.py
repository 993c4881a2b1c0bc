"""Framework operators as data: each one names the tensors it reads and writes, as products of
shape symbols and one element size, so its bytes (and FLOPs) follow from the shape it runs at.

An operator becomes one memory-bound kernel (:func:`gpusim.kernels.elementwise.elementwise_cost`
under the operator's name). Tensors are written ``"t k id"``: the product of the sizes of ``t``
and ``k`` elements of ``id`` bytes each; the last word is always the element size. The symbols
mean whatever the ``sizes`` mapping a caller passes says (the MoE tables in
:mod:`gpusim.workloads.moe.operators` use tokens, experts, top-k and element widths).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from gpusim.hardware.rates import GPURates
from gpusim.kernels.cost import KernelCost
from gpusim.kernels.elementwise import elementwise_cost
from gpusim.spec.workload import ElementwiseOp

Sizes = Mapping[str, int]
"""Size of every shape symbol and element-size name an operator table uses."""


@dataclass(frozen=True)
class Tensor:
    """A tensor an operator touches: ``dims`` elements of ``element`` bytes each."""

    dims: tuple[str, ...]
    element: str

    @classmethod
    def parse(cls, spec: str) -> Tensor:
        """``"t k id"``: dimensions ``t`` x ``k`` of ``id``-byte elements."""
        words = spec.split()
        if not words:
            raise ValueError("a tensor needs at least its element size")
        return cls(tuple(words[:-1]), words[-1])

    def elements(self, sizes: Sizes) -> int:
        """How many elements it holds."""
        n = 1
        for d in self.dims:
            n *= sizes[d]
        return n

    def bytes(self, sizes: Sizes) -> int:
        """Its size in bytes."""
        return self.elements(sizes) * sizes[self.element]


@dataclass(frozen=True)
class Operator:
    """One framework operator launching one kernel."""

    name: str
    reads: tuple[Tensor, ...] = ()
    writes: tuple[Tensor, ...] = ()
    flops_per_element: float = 0.0
    """Arithmetic per element of its largest tensor; 0 for data movement (every table entry
    today: these operators are modelled as memory-bound)."""

    def bytes_read(self, sizes: Sizes) -> int:
        """HBM bytes it reads."""
        return sum(t.bytes(sizes) for t in self.reads)

    def bytes_written(self, sizes: Sizes) -> int:
        """HBM bytes it writes."""
        return sum(t.bytes(sizes) for t in self.writes)

    def flops(self, sizes: Sizes) -> float:
        """``flops_per_element`` x the elements of its largest tensor."""
        if not self.flops_per_element:
            return 0.0
        largest = max((t.elements(sizes) for t in (*self.reads, *self.writes)), default=0)
        return self.flops_per_element * largest

    def kernel(self, sizes: Sizes) -> ElementwiseOp:
        """The kernel it launches at ``sizes``."""
        return ElementwiseOp(
            bytes_read=self.bytes_read(sizes),
            bytes_written=self.bytes_written(sizes),
            flops=self.flops(sizes),
        )

    def cost(self, sizes: Sizes, rates: GPURates) -> KernelCost:
        """Its kernel's cost on the GPU of ``rates``, under the operator's name."""
        return replace(elementwise_cost(self.kernel(sizes), rates), name=self.name)


def operator(
    name: str, reads: str = "", writes: str = "", flops_per_element: float = 0.0
) -> Operator:
    """An operator from comma-separated tensor specs: ``operator("topk", reads="t e prob",
    writes="t k prob, t k id")``."""

    def tensors(specs: str) -> tuple[Tensor, ...]:
        return tuple(Tensor.parse(s) for s in specs.split(",") if s.strip())

    return Operator(name, tensors(reads), tensors(writes), flops_per_element)
