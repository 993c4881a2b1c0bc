"""Building blocks of the Megatron-Core programs: a per-rank program under construction whose
steps are PyTorch operators (op kind, autograd, runtime call), host-only steps, syncs and
torch.distributed collectives. The operator sequences themselves are in
:mod:`gpusim.workloads.moe.megatron` (router, experts) and
:mod:`gpusim.workloads.moe.megatron_dispatch` (token dispatchers)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gpusim.execution.host_costs import OpKind, RuntimeCall
from gpusim.execution.program import Exchange, ExchangeStep, HostStep, KernelStep, Step, SyncStep
from gpusim.hardware.rates import GPURates
from gpusim.kernels.cost import KernelCost
from gpusim.workloads.moe.hostdriven import Phase, elementwise
from gpusim.workloads.moe.operators import ID_BYTES, INT32_BYTES

RADIX_DIGIT_BITS = 8


@dataclass
class Program:
    """One rank's steps as they are appended; ``training``: the forward records autograd, so
    ops whose inputs require grad (``grad=True``) pay the autograd bookkeeping."""

    rates: GPURates
    training: bool
    nccl_sms: int
    steps: list[Step] = field(default_factory=list)

    @property
    def last(self) -> int:
        """Index of the last step appended."""
        return len(self.steps) - 1

    @property
    def last_launch(self) -> int | None:
        """Index of the last step that put work on a stream (None: none yet)."""
        for i in range(len(self.steps) - 1, -1, -1):
            if not isinstance(self.steps[i], HostStep):
                return i
        return None

    def add(self, step: Step) -> int:
        """Append ``step``; returns its index."""
        self.steps.append(step)
        return self.last

    def op(
        self,
        name: str,
        read_B: float,
        write_B: float,
        phase: Phase,
        kind: OpKind = OpKind.elementwise,
        *,
        grad: bool = True,
        new_op: bool = True,
        after: tuple[int, ...] = (),
        call: RuntimeCall = RuntimeCall.launch_kernel,
    ) -> int:
        """A memory-bound operator launching one kernel (or a further kernel of one)."""
        cost = elementwise(name, read_B, write_B, self.rates)
        return self.kernel(cost, phase, kind, grad=grad, new_op=new_op, after=after, call=call)

    def kernel(
        self,
        cost: KernelCost,
        phase: Phase,
        kind: OpKind = OpKind.elementwise,
        *,
        grad: bool = True,
        new_op: bool = True,
        after: tuple[int, ...] = (),
        stream: int = 0,
        call: RuntimeCall = RuntimeCall.launch_kernel,
    ) -> int:
        """Any kernel, as the first of a framework op (``new_op``) or a further one."""
        rg = self.training and grad
        step = KernelStep(cost, phase, stream, after, new_op, kind, rg, call)
        return self.add(step)

    def host(
        self,
        phase: Phase,
        kind: OpKind | None = None,
        count: int = 1,
        *,
        grad: bool = False,
    ) -> int:
        """Host-only work: ``count`` Python steps (kind None) or ops of ``kind`` launching
        nothing (views, CPU tensor ops, allocations)."""
        if kind is None:
            return self.add(HostStep(phase, "python", count))
        return self.add(HostStep(phase, kind, count, self.training and grad))

    def view(self, phase: Phase, count: int = 1, *, grad: bool = False) -> int:
        """``count`` view ops (view, reshape, expand, slicing, same-dtype ``.to``)."""
        return self.host(phase, OpKind.view, count, grad=grad)

    def to_host(self, size_B: int, phase: Phase, kind: OpKind = OpKind.elementwise) -> int:
        """A value the host needs (``.cpu()``, ``.item()``, the count inside ``nonzero``):
        dispatch, the d2h copy after every stream, the wait and the return latency."""
        return self.add(SyncStep(size_B, phase, op_kind=kind))

    def stream_sync(self, phase: Phase) -> int:
        """``torch.cuda.current_stream().synchronize()``."""
        return self.add(SyncStep(0, phase, kind="stream"))

    def collective(
        self, exchange: Exchange, phase: Phase, *, grad: bool = True, after: tuple[int, ...] = ()
    ) -> int:
        """A torch.distributed call (``torch.empty`` of its output, dispatch, the c10d
        ProcessGroupNCCL call, the NCCL kernel)."""
        self.view(phase)  # torch.empty of the output: an allocation that launches nothing
        rg = self.training and grad
        step = ExchangeStep(
            exchange, phase, after=after, call=RuntimeCall.collective, records_graph=rg
        )
        return self.add(step)

    def nonzero(
        self, name: str, in_B: float, out_B: float, phase: Phase, *, grad: bool = False
    ) -> None:
        """``nonzero`` / ``masked_select`` / boolean indexing on CUDA (ATen's nonzero): a
        flag-select kernel, the count copied to the host and waited for (output size), then
        the output written (a further kernel of the op)."""
        self.op(f"{name}_select", in_B, 0, phase, OpKind.indexing, grad=grad)
        self.to_host(ID_BYTES, phase, OpKind.indexing)
        self.op(f"{name}_write", in_B, out_B, phase, OpKind.indexing, grad=grad, new_op=False)

    def argsort(self, name: str, n: int, key_B: int, phase: Phase) -> None:
        """``torch.argsort`` of ``n`` keys of ``key_B`` bytes (no known range: a radix sort
        over all their bits, cub's onesweep: one histogram kernel, then one pass per 8-bit
        digit, each reading and writing keys and values), plus the iota of the values."""
        passes = key_B * 8 // RADIX_DIGIT_BITS
        keys_B, vals_B = n * key_B, n * ID_BYTES
        self.op(f"{name}_iota", 0, vals_B, phase, OpKind.reduction, grad=False)
        hist_B = passes * 2**RADIX_DIGIT_BITS * INT32_BYTES
        self.op(f"{name}_histogram", keys_B, hist_B, phase, grad=False, new_op=False)
        for p in range(passes):
            rw = keys_B + vals_B
            self.op(f"{name}_onesweep_{p}", rw, rw, phase, grad=False, new_op=False)

    def bincount(self, n: int, bins: int, phase: Phase) -> None:
        """``torch.bincount`` on CUDA (ATen SummaryOps.cu _bincount_cuda_template): the input's
        min read back (``self.min().cpu()``, the non-negative check), then its max read back
        (``self.max().cpu()``, which sizes the output), then the histogram kernel: two
        reductions and two host syncs before the kernel."""
        self.op("bincount_min", n * ID_BYTES, ID_BYTES, phase, OpKind.reduction, grad=False)
        self.to_host(ID_BYTES, phase, OpKind.reduction)
        self.op("bincount_max", n * ID_BYTES, ID_BYTES, phase, OpKind.reduction, grad=False)
        self.to_host(ID_BYTES, phase, OpKind.reduction)
        self.op("bincount", n * ID_BYTES, bins * ID_BYTES, phase, OpKind.reduction, grad=False)
