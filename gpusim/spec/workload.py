"""Workload specs: what runs on the described hardware. Discriminated on ``kind``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field, model_validator

from gpusim.spec.base import Dtype, Identifier, NonNegativeFloat, NonNegativeInt, PositiveInt, Spec
from gpusim.spec.llm import LlmInferenceWorkload
from gpusim.spec.moe import MoELayerWorkload, RouterStepsWorkload
from gpusim.spec.problems import (
    Problem,
    chosen_gpus,
    gpu_list_problems,
    gpu_problems,
    tensor_dtype_problems,
)
from gpusim.spec.profile import InstructionPath
from gpusim.spec.sparse import SparsityPattern, check_tileable
from gpusim.spec.speculative import SpeculativeDecodingWorkload
from gpusim.spec.topology import Topology


class GemmOp(Spec):
    """C[m, n] = A[m, k] @ B[k, n] in ``dtype`` on the tensor cores."""

    op: Literal["gemm"] = "gemm"
    m: PositiveInt
    n: PositiveInt
    k: PositiveInt
    dtype: Dtype = Dtype.bf16
    path: InstructionPath = InstructionPath.wgmma


class ElementwiseOp(Spec):
    """A memory-bound kernel: reads and writes HBM, little arithmetic."""

    op: Literal["elementwise"] = "elementwise"
    bytes_read: NonNegativeInt
    bytes_written: NonNegativeInt
    flops: NonNegativeFloat = 0.0


class NullOp(Spec):
    """An empty kernel: only the launch path and the kernel floor."""

    op: Literal["null"] = "null"


class MemcpyOp(Spec):
    """cudaMemcpyAsync between a GPU and its host's memory, done by a copy engine over the
    fabric (PCIe or NVLink-C2C), not by SMs."""

    op: Literal["memcpy"] = "memcpy"
    direction: Literal["h2d", "d2h"]
    bytes: PositiveInt


SpmmImpl = Literal["flash_llm", "cublas", "sputnik", "cusparse", "sparta"]
"""Who runs an SpMM: Flash-LLM's Tiled-CSL kernel, or a baseline of its evaluation (flash_llm.md
section 4): cuBLAS's dense tensor-core GEMM, Sputnik (CUDA cores, CSR), cuSPARSE (CSR SpMM),
SparTA (a 2:4 part on sparse tensor cores plus a CSR remainder on Sputnik)."""


class SpmmOp(Spec):
    """C[m, n] = W[m, k] @ X[k, n] in FP16 with W unstructured-sparse (``sparsity`` = fraction of
    zeros), run by ``impl`` (``docs/sparse.md``). An op may launch more than one kernel (a
    split-K reduction, SparTA's two parts)."""

    op: Literal["spmm"] = "spmm"
    m: PositiveInt = Field(description="Rows of the sparse weight matrix (output features).")
    k: PositiveInt = Field(description="Columns of the weights (input features).")
    n: PositiveInt = Field(description="Columns of the dense activations (batch tokens).")
    sparsity: float = Field(ge=0.0, lt=1.0, description="Fraction of zero weights.")
    pattern: SparsityPattern = "uniform"
    row_density_cv: NonNegativeFloat = Field(
        default=0.5, description="Spread of row densities for pattern 'skewed_rows'."
    )
    seed: NonNegativeInt = Field(default=0, description="Seed of the nonzero placement.")
    impl: SpmmImpl = "flash_llm"

    @model_validator(mode="after")
    def _tileable(self) -> SpmmOp:
        if self.impl in ("flash_llm", "sparta"):
            check_tileable(self.m, self.k)
        return self


KernelOp = Annotated[GemmOp | ElementwiseOp | NullOp | MemcpyOp | SpmmOp, Field(discriminator="op")]


class GemmAllToAllWorkload(Spec):
    """Every participating GPU runs one GEMM, then sends its output in equal shares to every other
    participant (an all-to-all of the outputs), each share split into ``messages_per_peer``."""

    kind: Literal["gemm_alltoall"] = "gemm_alltoall"
    gpus: list[Identifier] | None = Field(
        default=None, description="GPU ids; all GPUs when absent."
    )
    gemm: GemmOp
    messages_per_peer: PositiveInt = 1

    def check(self, topology: Topology) -> Iterator[Problem]:
        """The GPU list names distinct GPUs of ``topology`` (and is not empty), each with a
        tensor-core peak for the GEMM's dtype."""
        yield from gpu_list_problems(self.gpus, topology, "gpus")
        gpus = chosen_gpus(self.gpus, topology)
        yield from tensor_dtype_problems(self.gemm.dtype, gpus, topology, ("gemm", "dtype"))


class KernelChainWorkload(Spec):
    """One host thread launches ``count`` copies of a kernel (or memcpy) back to back on one
    stream, then synchronises: the launch-bound versus GPU-bound regime in its simplest form."""

    kind: Literal["kernel_chain"] = "kernel_chain"
    gpu: Identifier | None = Field(default=None, description="GPU id; the first GPU when absent.")
    kernel: KernelOp
    count: PositiveInt
    launch: Literal["eager", "graph"] = "eager"

    def check(self, topology: Topology) -> Iterator[Problem]:
        """The GPU is one of ``topology`` (which has one when none is named) with a tensor-core
        peak for a GEMM kernel's dtype."""
        if self.gpu is not None:
            yield from gpu_problems(self.gpu, topology, ("gpu",))
        elif not topology.gpus():
            yield ("gpu",), f"topology '{topology.name}' has no GPU"
            return
        if isinstance(self.kernel, GemmOp):
            gpu = self.gpu if self.gpu is not None else topology.gpus()[0].id
            yield from tensor_dtype_problems(
                self.kernel.dtype, [gpu], topology, ("kernel", "dtype")
            )


class Transfer(Spec):
    """Bytes moved from one device to another, starting at ``start_us``."""

    src: Identifier
    dst: Identifier
    bytes: PositiveInt
    start_us: NonNegativeFloat = 0.0


class TransfersWorkload(Spec):
    """An explicit set of transfers over the topology's links (network what-ifs and tests)."""

    kind: Literal["transfers"] = "transfers"
    transfers: list[Transfer] = Field(min_length=1)

    def check(self, topology: Topology) -> Iterator[Problem]:
        """Every endpoint is a device of ``topology``; no transfer goes to its own source."""
        all_ids = {d.id for d in topology.devices}
        for i, tr in enumerate(self.transfers):
            for end, ref in (("src", tr.src), ("dst", tr.dst)):
                if ref not in all_ids:
                    yield (
                        ("transfers", i, end),
                        f"unknown device '{ref}' in topology '{topology.name}'",
                    )
            if tr.src == tr.dst:
                yield ("transfers", i, "dst"), "a transfer must go to another device"


Workload = Annotated[
    GemmAllToAllWorkload
    | KernelChainWorkload
    | TransfersWorkload
    | MoELayerWorkload
    | RouterStepsWorkload
    | LlmInferenceWorkload
    | SpeculativeDecodingWorkload,
    Field(discriminator="kind"),
]
