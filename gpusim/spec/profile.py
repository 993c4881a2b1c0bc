"""Calibration profiles: the hardware-level efficiency and cost parameters of the models.

A profile is what `gpusim calibrate fit` writes from measurements (kernels_ref on a real GPU, or
published microbenchmarks); a scenario names one. Every value carries its provenance.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from gpusim.spec.base import Dtype, Fraction, Identifier, NonNegativeFloat, Spec
from gpusim.spec.hardware import MemoryKind
from gpusim.spec.topology import LinkKind


class Measured(Spec):
    """One calibrated value with where it came from."""

    value: NonNegativeFloat
    source: str = Field(
        min_length=1, description="Program and device, or publication, it came from."
    )
    uncertainty: NonNegativeFloat | None = Field(
        default=None, description="One standard error, same unit."
    )
    low: NonNegativeFloat | None = Field(
        default=None,
        description="Low end of the published range the value was taken from (same unit); "
        "given together with `high`, and `value` lies between them.",
    )
    high: NonNegativeFloat | None = Field(
        default=None, description="High end of the published range (same unit)."
    )

    @model_validator(mode="after")
    def _value_within_range(self) -> Measured:
        if (self.low is None) != (self.high is None):
            raise ValueError("a range needs both `low` and `high`")
        if self.low is not None and self.high is not None:
            if self.low > self.high:
                raise ValueError(f"range low {self.low} > high {self.high}")
            if not self.low <= self.value <= self.high:
                raise ValueError(f"value {self.value} outside its range [{self.low}, {self.high}]")
        return self


class MeasuredFraction(Measured):
    """A calibrated fraction in (0, 1]."""

    value: Fraction


class InstructionPath(StrEnum):
    """Instruction families a matrix product runs on: the tensor-core ones (Hopper's legacy
    mma.sync path reaches far less of peak than wgmma) and ``cuda_core``, FMA instructions on
    the CUDA cores (a SIMT GEMM: what a GPU without tensor cores for the dtype runs, at the
    CUDA-core peak times the profile's ``cuda_core_efficiency``)."""

    wgmma = "wgmma"
    mma_sync = "mma_sync"
    cuda_core = "cuda_core"


TENSOR_PATHS: tuple[InstructionPath, ...] = (InstructionPath.wgmma, InstructionPath.mma_sync)
"""The tensor-core instruction paths: those with a ``tensor_efficiency`` in a profile."""


def native_tensor_path(compute_capability: str) -> InstructionPath:
    """The tensor-core instruction family a GPU of this compute capability runs its GEMMs on:
    ``wgmma`` from 9.0 (Hopper), ``mma_sync`` before it (Ampere has no wgmma)."""
    major = int(compute_capability.split(".")[0])
    return InstructionPath.wgmma if major >= 9 else InstructionPath.mma_sync


class LaunchCosts(Spec):
    """Host-side and launch-path costs (microseconds)."""

    launch_api_us: Measured = Field(description="Host time spent in cudaLaunchKernel per launch.")
    doorbell_to_start_us: Measured = Field(
        description="From the launch call returning to the kernel starting on an idle GPU."
    )
    kernel_floor_us: Measured = Field(description="Duration of an empty kernel on the GPU.")
    graph_launch_per_kernel_us: Measured = Field(
        description="Device-side cost per kernel node of a launched CUDA graph: the graph "
        "executor issues one node per this interval (the host pays one cudaGraphLaunch, "
        "`host.graph_launch_us`, for the whole graph)."
    )
    framework_op_us: Measured = Field(
        description="Framework (e.g. PyTorch eager) dispatch cost per operator of the default "
        "kind (elementwise); other kinds are in the `host` section."
    )
    sync_return_us: Measured = Field(
        description="From the GPU going idle to a host sync returning."
    )


class HostRuntimeCosts(Spec):
    """Host time by operation kind (microseconds) beyond ``launch`` (which holds the elementwise
    framework dispatch and cudaLaunchKernel), and the launch queue's depth. See
    ``docs/host_runtime.md`` for each value's source and range."""

    reduction_op_us: Measured = Field(
        description="Framework dispatch of a reduction, sort or top-k op (per op, excluding its "
        "runtime calls)."
    )
    indexing_op_us: Measured = Field(
        description="Framework dispatch of an indexing, nonzero or masked op (per op, excluding "
        "its runtime calls and any host synchronisation)."
    )
    view_op_us: Measured = Field(
        description="Framework dispatch of a view-only op (reshape, split, transpose, narrow): "
        "host time of an op that launches no kernel."
    )
    autograd_op_us: Measured = Field(
        description="Autograd bookkeeping added to every op when the forward records a graph "
        "(grad mode on, inputs requiring grad)."
    )
    python_step_us: Measured = Field(
        description="A host-only Python step that launches nothing (a loop iteration, a module "
        "call's bookkeeping)."
    )
    cublas_call_us: Measured = Field(
        description="Host time of one cuBLAS/cuBLASLt GEMM call: its algorithm heuristic plus "
        "the kernel launch it makes (replaces cudaLaunchKernel for that kernel)."
    )
    collective_call_us: Measured = Field(
        description="Host time of one c10d (ProcessGroupNCCL) collective call below the "
        "framework dispatch: stream/event bookkeeping plus the NCCL kernel launch."
    )
    graph_launch_us: Measured = Field(
        description="Host time of one cudaGraphLaunch of a straight-line graph (whatever its "
        "node count)."
    )
    launch_queue_depth: Measured = Field(
        description="Pending launches one stream holds before a launch call blocks until the "
        "oldest finishes (a count, at least 1)."
    )

    @model_validator(mode="after")
    def _queue_holds_a_launch(self) -> HostRuntimeCosts:
        if self.launch_queue_depth.value < 1:
            raise ValueError("launch_queue_depth must be at least 1")
        return self


class DeviceCosts(Spec):
    """Device-side synchronisation and scheduling costs (persistent kernels, collectives)."""

    flag_handoff_ns: Measured = Field(
        description="One-way handoff of a flag between blocks on different SMs via global memory."
    )
    grid_barrier_us: Measured = Field(description="One device-wide barrier of a persistent grid.")
    task_latency_ns: Measured = Field(
        description="Persistent scheduler: from a task being ready to a processor block starting "
        "it (doorbell write, processor poll, 128-byte descriptor fetch)."
    )
    scheduler_ns_per_task: Measured = Field(
        description="Time the single scheduler warp spends per task (queue sweep, scan, doorbell): "
        "the serial part that caps the task rate."
    )
    subscriber_ns_per_task: Measured = Field(
        description="Subscriber time to decode one arrived packet into one task."
    )
    nccl_sms: Measured = Field(description="SMs an NCCL collective kernel occupies (channels).")


class MemoryHierarchyCosts(Spec):
    """Achievable rates and latencies of a GPU's on-chip memory hierarchy (docs/memory.md)."""

    l2_near_read_GBps: Measured = Field(
        description="L2 read bandwidth of the whole GPU while the data read fits the near "
        "partition of every SM."
    )
    l2_whole_read_GBps: Measured = Field(
        description="L2 read bandwidth of the whole GPU over data spread across the whole L2."
    )
    l2_hit_latency_ns: Measured = Field(
        description="Load latency of an L2 hit, averaged over near and far partitions: with a "
        "CTA's loads in flight it bounds what one CTA alone draws (Little's law)."
    )
    hbm_load_latency_ns: Measured = Field(
        description="Load latency of an L2 miss served by HBM: a GEMM pipeline's fill time."
    )


class NcclProtocol(StrEnum):
    """NCCL's wire protocols: LL (8-byte stores carrying 4 data bytes and a flag), LL128
    (128-byte lines carrying 120 data bytes) and Simple (bulk copies fenced per step)."""

    ll = "ll"
    ll128 = "ll128"
    simple = "simple"


class NcclHardware(StrEnum):
    """The hardware classes of NCCL's latency table: NVLink, PCI (also SHM) and NET."""

    nvlink = "nvlink"
    pcie = "pcie"
    net = "net"


class NcclCostsSpec(Spec):
    """NCCL's protocol model: the latencies and bandwidth fractions of its tuner
    (``src/graph/tuning.cc``), the point-to-point protocol threshold and the host call cost.

    A collective with protocol ``p`` over ``steps`` pipeline steps costs
    ``base_latency_us[p] + steps x hop_latency_us[hw][p] + bytes / (bandwidth x
    bandwidth_fraction[p])`` (``docs/collectives.md``)."""

    base_latency_us: dict[NcclProtocol, Measured] = Field(
        description="Fixed latency of one collective by protocol (tuner baseLat, ring)."
    )
    hop_latency_us: dict[NcclHardware, dict[NcclProtocol, Measured]] = Field(
        description="Latency of one pipeline step by hardware class and protocol (tuner hwLat)."
    )
    bandwidth_fraction: dict[NcclProtocol, MeasuredFraction] = Field(
        description="Fraction of the link's achievable bandwidth a protocol delivers as data."
    )
    p2p_ll_threshold_B: Measured = Field(
        description="Point-to-point (all-to-all) messages up to this many bytes per channel use "
        "LL, larger ones Simple (NCCL_P2P_LL_THRESHOLD)."
    )
    host_call_us: Measured = Field(
        description="Host time of one NCCL collective call (enqueue and kernel launch)."
    )


class SparseCosts(Spec):
    """Costs of Flash-LLM's Load-as-Sparse, Compute-as-Dense SpMM (the Tiled-CSL kernel) that
    its instructions do not give: what the model of :mod:`gpusim.kernels.spmm` calibrates."""

    extract_cycles_per_nonzero: Measured = Field(
        description="Issue cycles of one warp scheduler per nonzero a thread scatters from its "
        "registers into the zero-filled shared-memory tile (the extraction step, after the "
        "barrier, overlapped with nothing of its own block)."
    )


class StorageIOCosts(Spec):
    """Host costs of reading a storage device through the operating system (not by DMA into
    the GPU's memory)."""

    host_cpu_us_per_MB: Measured = Field(
        description="Host CPU time one MB (1e6 B) read from storage costs the process that "
        "drives the GPU (file system, page-cache copy into the tensor), taken from the driving "
        "thread while the read runs (one Python interpreter: the GIL); see "
        "docs/speculative_decoding.md."
    )


class CalibrationProfile(Spec):
    """All calibrated hardware-level parameters for one GPU/host kind."""

    id: Identifier
    description: str = ""
    link_efficiency: dict[LinkKind, MeasuredFraction] = Field(
        description="Achievable fraction of nameplate bandwidth per link kind."
    )
    memory_efficiency: dict[MemoryKind, MeasuredFraction] = Field(
        description="Achievable fraction of nameplate bandwidth per memory tier."
    )
    tensor_efficiency: dict[InstructionPath, dict[Dtype, MeasuredFraction]] = Field(
        description="MMA instruction issue rate of one SM as a fraction of its share of the dense "
        "tensor peak, by instruction path and dtype (what the tensor cores sustain when operands "
        "are ready; operand delivery is modelled separately, gpusim.kernels.mainloop)."
    )
    memory_hierarchy: MemoryHierarchyCosts
    cuda_core_efficiency: MeasuredFraction = Field(
        description="Issue rate a CUDA-core (SIMT) kernel sustains as a fraction of the CUDA-core "
        "peak: also the FMA rate of a SIMT GEMM's mainloop (InstructionPath.cuda_core)."
    )
    launch: LaunchCosts
    host: HostRuntimeCosts
    device: DeviceCosts
    nccl: NcclCostsSpec
    sparse: SparseCosts | None = Field(
        default=None, description="SpMM (Load-as-Sparse, Compute-as-Dense) costs, when calibrated."
    )
    storage_io: StorageIOCosts | None = Field(
        default=None,
        description="Host costs of storage reads through the operating system; absent: reads "
        "are DMA (GPUDirect Storage) and cost the host nothing.",
    )

    @model_validator(mode="after")
    def _tensor_paths_only(self) -> CalibrationProfile:
        if InstructionPath.cuda_core in self.tensor_efficiency:
            raise ValueError(
                "tensor_efficiency has no cuda_core path: a CUDA-core GEMM runs at "
                "cuda_core_efficiency"
            )
        return self
