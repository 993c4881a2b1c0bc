"""The forward model: what one measurement should read, given candidate profile parameters and
the hardware's nameplates.

:func:`observe` turns one :class:`~gpusim.calibrate.document.Measurement` into an
:class:`Observation` (the measured value, the profile parameters its prediction depends on, and
the prediction as a function of them) or into :class:`Unused` (a known measurement that informs no
profile parameter, with the reason). Unknown names and missing or invalid parameters raise
:class:`ModelError`. Params not listed below are ignored.

Which points inform which parameter (nameplates from the specs; launch parameters are under
``launch.``, device ones under ``device.``):

Launch (``us``)
    ``launch_api_us`` = launch_api_us. ``launch_to_start_us`` = launch_api_us +
    doorbell_to_start_us. ``null_kernel_us`` = kernel_floor_us. ``launch_return_to_start_us`` =
    doorbell_to_start_us. ``stream_interval_us {kernels}`` (kernels already queued) =
    kernel_floor_us. ``stream_issue_interval_us {kernels}`` (issued live by the host) =
    max(launch_api_us, kernel_floor_us): back-to-back launches are spaced by the host's issue cost
    or the GPU's floor, the slower. ``graph_interval_us {kernels}`` =
    max(graph_launch_per_kernel_us, kernel_floor_us). ``sync_round_trip_us`` = launch_api_us +
    doorbell_to_start_us + kernel_floor_us + sync_return_us. ``framework_launch_to_start_us``
    (published: a null kernel launched through a framework op) = framework_op_us + launch_api_us +
    doorbell_to_start_us.
Device memory (``GB/s``, bytes counted across the memory interface)
    ``device_{read,write,copy}_GBps {bytes}`` = memory_efficiency.<the GPU's memory_kind: hbm, or
    a unified pool's lpddr> x the GPU's hbm_bw_GBps, used
    only at ``bytes >= 8 x l2_bytes`` (the document's device.l2_bytes, else the GPU spec's); a point
    without ``bytes`` is a published asymptotic figure. An L2-resident ``device_read_GBps`` =
    memory_hierarchy.l2_near_read_GBps at ``bytes <= 0.75 x`` one partition, l2_whole_read_GBps
    between one partition and ``0.75 x`` the L2. ``l2_read_GBps {partition}`` (published) =
    memory_hierarchy.l2_<partition>_read_GBps.
Links (``GB/s``)
    ``h2d_GBps`` / ``d2h_GBps {bytes, pinned, gpu?}`` = link_efficiency[K] x the nameplate of the
    path between the GPU and its host CPU in that direction, K its link kind (pcie or c2c); only
    pinned copies of >= 256 MiB. ``p2p_copy_GBps`` / ``p2p_store_GBps {src, dst, bytes}`` = the
    same over the src -> dst path (K = nvlink through NVSwitch or direct), >= 256 MiB.
    ``nccl_bus_GBps {link, gpu?}`` (published NCCL bus bandwidth at large messages) =
    link_efficiency[link] x one GPU's port of that kind (NVLink: the sum of its NVLinks;
    infiniband: one NIC's port). ``host_memory_GBps {gpu?}`` (published STREAM) =
    memory_efficiency[kind of the host CPU's memory] x its nameplate.
Flags (``ns``)
    ``flag_handoff_ns {scope}`` = device.flag_handoff_ns for ``scope == "gpu"`` (blocks on
    different SMs); ``flag_round_trip_ns {scope}`` (published ping-pong) = 2 x flag_handoff_ns.
Tensor cores (``TFLOP/s``)
    ``tile_tflops {path, dtype, blocks_per_sm, k, tile_m, tile_n, tile_k?, stages?}`` = the
    grid's steady mainloop rate (:mod:`gpusim.kernels.mainloop`): ``blocks x SMs`` CTAs, each K
    step the slowest of MMA issue at tensor_efficiency[path][dtype], the step's operand bytes
    at memory_hierarchy.l2_near_read_GBps shared by the grid (at most ``stages x bytes /
    l2_hit_latency_ns`` per CTA) and shared memory; used at deep K (``k >= 1024``) and any
    occupancy (a point without ``blocks_per_sm`` is a published figure at FlashMoE's 2 per SM);
    whichever bound the candidate values make binding is the parameter a point informs.
    ``skinny_gemm_tflops`` / ``gemm_tflops {m, n, k, dtype, impl}`` = the same steady rate for
    the library's first tile on every SM, times useful / issued MMA work; path is ``impl``
    (``cublas``: wgmma from compute capability 9.0, else mma_sync); used only with at least 4
    full waves of at least 32 K steps (fill, epilogue and tail then cost a few per cent).
Persistent kernel (``ns``)
    ``scheduler_ns_per_task`` = device.scheduler_ns_per_task; ``task_latency_ns`` =
    device.task_latency_ns.
SpMM (``us``)
    ``spmm_us {m, k, n, nnz}`` (optional ``split_k``, ``tile_m``: the measured kernel's, when it
    is not Flash-LLM's choice) = the LSCD kernel and its split-K reduction
    (:mod:`gpusim.kernels.spmm`) with tensor_efficiency.mma_sync.fp16, memory_efficiency.hbm,
    memory_hierarchy.hbm_load_latency_ns, launch.kernel_floor_us and
    sparse.extract_cycles_per_nonzero.

Known but informing no profile parameter (reported as unused): ``host_flag_one_way_us``,
``flag_handoff_p2p_ns``, ``flag_handoff_hostmem_ns``, ``launch_to_flag_us``,
``graph_launch_api_us``, ``host_chain_us``, ``persistent_us`` (end-to-end times: validation, not
calibration), ``dense_us`` (the dense product beside ``spmm_us``: a GEMM datum, not an SpMM
one), and the points the table's last column
excludes.

"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

from gpusim.arith import ceil_div
from gpusim.calibrate.document import DeviceInfo, Measurement
from gpusim.calibrate.nameplates import NameplateError, Nameplates
from gpusim.calibrate.reading import (
    ModelError,
    bool_param,
    check_unit,
    dtype_param,
    gpu_ref,
    impl_path,
    int_param,
    path_param,
    required_int,
    str_param,
)
from gpusim.kernels.gemm import library_tiles
from gpusim.kernels.mainloop import CtaTile, MainloopShare, SmRates, k_step_terms_s
from gpusim.kernels.spmm import flash_llm_config, lscd_hbm_bytes, lscd_plan, splitk_reduction
from gpusim.kernels.tile_gemm import PERSISTENT_K_ROW_BYTES, PERSISTENT_STAGES
from gpusim.spec.base import Dtype, storage_bytes
from gpusim.spec.hardware import GPUSpec, MemoryKind
from gpusim.spec.profile import InstructionPath
from gpusim.spec.topology import LinkKind
from gpusim.spec.workload import SpmmOp
from gpusim.units import GBps_to_Bps, MB_to_B, MHz_to_Hz, ns_to_s, us_to_s

ParamValues = Mapping[str, float]
Predict = Callable[[ParamValues, float], float]
"""``predict(values, p)``: the predicted measurement, with every ``max`` of the model replaced by
a p-norm (``p = inf``: the exact model), so that a fit's first stages see gradients on both sides
of a kink."""
EXACT: Final = math.inf

HBM_MIN_L2_MULTIPLE: Final = 8
"""A device memory point informs HBM efficiency only at ``bytes >= 8 x l2_bytes``."""
LINK_MIN_BYTES: Final = 256 * 2**20
"""A transfer informs link efficiency only at >= 256 MiB (latency below 2 % at PCIe rates)."""
DEEP_K: Final = 1024
"""A tile_tflops point informs the ``large`` fraction only at ``k >= 1024``."""
L2_RESIDENT_FRACTION: Final = 0.75
"""A read of at most this fraction of the L2 (of one partition: the near rate) stays resident."""
PERSISTENT_BLOCKS_PER_SM: Final = 2
"""A published tile rate without ``blocks_per_sm`` is FlashMoE's full occupancy."""
GEMM_MIN_WAVES: Final = 4
GEMM_MIN_STEPS: Final = 32
"""A gemm_tflops point informs the mainloop rates only with at least 4 full waves of 32 K steps
(fill, epilogue and the tail wave then cost a few per cent, which the steady-state model
leaves out)."""
CROSS_SM_SCOPES: Final = frozenset({"gpu"})
OTHER_SCOPES: Final = frozenset({"cta", "cluster", "sys", "system"})


@dataclass(frozen=True)
class Observation:
    """A measurement the fit uses."""

    value: float
    params: tuple[str, ...]
    """Profile paths the prediction depends on."""
    predict: Predict
    formula: str
    """The model with its nameplates, e.g. ``p2p_copy_GBps = link_efficiency.nvlink x 450 GB/s``."""
    kinked: bool = False
    """The model has a ``max`` (its fit starts from smoothed versions)."""


@dataclass(frozen=True)
class Unused:
    """A known measurement that informs no profile parameter."""

    reason: str


@dataclass(frozen=True)
class Context:
    """What a measurement's model may read besides the measurement itself."""

    nameplates: Nameplates | None
    device: DeviceInfo | None
    siblings: Sequence[Measurement]
    """Every measurement of the same document (pairing, occupancy series)."""


def _nameplates(ctx: Context, m: Measurement) -> Nameplates:
    if ctx.nameplates is None:
        raise ModelError(f"{m.name} needs nameplates: give a topology or a GPU spec")
    return ctx.nameplates


def _l2_bytes(ctx: Context, plates: Nameplates) -> float:
    if ctx.device is not None and ctx.device.l2_bytes:
        return float(ctx.device.l2_bytes)
    return MB_to_B(plates.gpu.l2_MB)


def _peak_TFLOPS(m: Measurement, plates: Nameplates, dtype: Dtype) -> float:
    peak = plates.gpu.tensor_peak_TFLOPS.get(dtype)
    if peak is None:
        raise ModelError(f"{plates.gpu.name} has no tensor peak for {dtype.value}", ".params.dtype")
    return peak


def smooth_max(a: float, b: float, p: float) -> float:
    """``max(a, b)`` for ``p = inf``, else the p-norm ``(a^p + b^p)^(1/p)`` (a, b >= 0)."""
    top = max(a, b)
    if math.isinf(p) or top <= 0:
        return top
    return float(top * ((a / top) ** p + (b / top) ** p) ** (1 / p))


# ---- model builders ---------------------------------------------------------------------------


def _sum_of(m: Measurement, params: tuple[str, ...]) -> Observation:
    def predict(v: ParamValues, _p: float) -> float:
        return sum(v[p] for p in params)

    return Observation(m.stats.median, params, predict, f"{m.name} = {' + '.join(params)}")


def _scaled(m: Measurement, param: str, factor: float, what: str, unit: str) -> Observation:
    def predict(v: ParamValues, _p: float) -> float:
        return v[param] * factor

    return Observation(
        m.stats.median, (param,), predict, f"{m.name} = {param} x {factor:g} {unit} ({what})"
    )


def _max_of(m: Measurement, a: str, b: str) -> Observation:
    def predict(v: ParamValues, p: float) -> float:
        return smooth_max(v[a], v[b], p)

    return Observation(m.stats.median, (a, b), predict, f"{m.name} = max({a}, {b})", kinked=True)


API: Final = "launch.launch_api_us"
DOORBELL: Final = "launch.doorbell_to_start_us"
FLOOR: Final = "launch.kernel_floor_us"
_SUMS: Final[dict[str, tuple[str, ...]]] = {
    "launch_api_us": (API,),
    "launch_to_start_us": (API, DOORBELL),
    "null_kernel_us": (FLOOR,),
    "sync_round_trip_us": (API, DOORBELL, FLOOR, "launch.sync_return_us"),
    "framework_launch_to_start_us": ("launch.framework_op_us", API, DOORBELL),
    "scheduler_ns_per_task": ("device.scheduler_ns_per_task",),
    "task_latency_ns": ("device.task_latency_ns",),
    "launch_return_to_start_us": (DOORBELL,),
    "stream_interval_us": (FLOOR,),
}
_MAXES: Final[dict[str, tuple[str, str]]] = {
    "stream_issue_interval_us": (API, FLOOR),
    "graph_interval_us": ("launch.graph_launch_per_kernel_us", FLOOR),
}
_UNUSED: Final[dict[str, str]] = {
    "host_flag_one_way_us": "no profile parameter (host-device flag latency)",
    "flag_handoff_p2p_ns": "no profile parameter (flag handoff between GPUs)",
    "host_chain_us": "end-to-end time: validates the persistent-kernel model, calibrates nothing",
    "persistent_us": "end-to-end time: validates the persistent-kernel model, calibrates nothing",
    "dense_us": "the dense product measured beside spmm_us: validates the GEMM model",
    "launch_to_flag_us": "raw sample of launch_to_start_us before the flag latency is subtracted",
    "graph_launch_api_us": "host cost of one graph launch: host.graph_launch_us (not fitted yet: "
    "taken from the published figure) plus a per-node host part the model neglects",
    "flag_handoff_hostmem_ns": "no profile parameter (flags in host memory)",
}


def _device_memory(m: Measurement, ctx: Context) -> Observation | Unused:
    check_unit(m, "GBps")
    plates = _nameplates(ctx, m)
    size = int_param(m, "bytes", required=False)
    l2 = _l2_bytes(ctx, plates)
    if size is not None and size <= l2 * L2_RESIDENT_FRACTION:
        if m.name != "device_read_GBps":
            return Unused(f"{size} B is L2-resident: only reads calibrate the L2 rates")
        partition = l2 / plates.gpu.l2_partitions
        which = "near" if size <= partition * L2_RESIDENT_FRACTION else "whole"
        if which == "whole" and size <= partition:
            return Unused(f"{size} B is between the near and whole L2 regimes")
        return _sum_of(m, (f"memory_hierarchy.l2_{which}_read_GBps",))
    if size is not None and size < HBM_MIN_L2_MULTIPLE * l2:
        return Unused(f"{size} B is below {HBM_MIN_L2_MULTIPLE} x L2 ({l2:.0f} B): not HBM-bound")
    kind = plates.gpu.memory_kind  # hbm, or a unified pool's lpddr
    what = f"{'HBM' if kind is MemoryKind.hbm else f'{kind} memory'} of {plates.gpu.name}"
    return _scaled(m, f"memory_efficiency.{kind.value}", plates.gpu.hbm_bw_GBps, what, "GB/s")


def _l2_read(m: Measurement, _ctx: Context) -> Observation:
    check_unit(m, "GBps")
    partition = str_param(m, "partition")
    if partition not in ("near", "whole"):
        raise ModelError(f"partition must be near or whole, got '{partition}'", ".params.partition")
    return _sum_of(m, (f"memory_hierarchy.l2_{partition}_read_GBps",))


def _large_enough(m: Measurement) -> Unused | None:
    size = int_param(m, "bytes", required=False)
    if size is not None and size < LINK_MIN_BYTES:
        return Unused(f"{size} B is below {LINK_MIN_BYTES} B: latency still shows")
    return None


def _link_scaled(m: Measurement, link_kind: LinkKind, nameplate: float, what: str) -> Observation:
    return _scaled(m, f"link_efficiency.{link_kind.value}", nameplate, what, "GB/s")


def _host_copy(m: Measurement, ctx: Context) -> Observation | Unused:
    check_unit(m, "GBps")
    if not bool_param(m, "pinned"):
        return Unused("pageable copy: staged through a host buffer, not the link's rate")
    small = _large_enough(m)
    if small is not None:
        return small
    plates = _nameplates(ctx, m)
    try:
        path = plates.host_path(gpu_ref(m, "gpu", False), to_gpu=m.name == "h2d_GBps")
    except NameplateError as exc:
        raise ModelError(str(exc), ".params") from None
    return _link_scaled(m, path.kind, path.nameplate_GBps, path.what)


def _p2p(m: Measurement, ctx: Context) -> Observation | Unused:
    check_unit(m, "GBps")
    src, dst = gpu_ref(m, "src", True), gpu_ref(m, "dst", True)
    small = _large_enough(m)
    if small is not None:
        return small
    plates = _nameplates(ctx, m)
    assert src is not None and dst is not None  # required
    try:
        path = plates.gpu_pair(src, dst)
    except NameplateError as exc:
        raise ModelError(str(exc), ".params") from None
    return _link_scaled(m, path.kind, path.nameplate_GBps, path.what)


def _nccl_bus(m: Measurement, ctx: Context) -> Observation:
    check_unit(m, "GBps")
    name = str_param(m, "link")
    try:
        kind = LinkKind(name)
    except ValueError:
        raise ModelError(f"unknown link kind '{name}'", ".params.link") from None
    plates = _nameplates(ctx, m)
    try:
        port = plates.port(kind, gpu_ref(m, "gpu", False))
    except NameplateError as exc:
        raise ModelError(str(exc), ".params") from None
    return _link_scaled(m, kind, port.nameplate_GBps, port.what)


def _host_memory(m: Measurement, ctx: Context) -> Observation:
    check_unit(m, "GBps")
    plates = _nameplates(ctx, m)
    try:
        kind, bw, what = plates.host_memory(gpu_ref(m, "gpu", False))
    except NameplateError as exc:
        raise ModelError(str(exc), ".params") from None
    return _scaled(m, f"memory_efficiency.{kind.value}", bw, what, "GB/s")


def _flag(m: Measurement, factor: float) -> Observation | Unused:
    check_unit(m, "ns")
    scope = str_param(m, "scope")
    if scope in OTHER_SCOPES:
        return Unused(f"scope '{scope}': the profile holds the cross-SM ('gpu') handoff only")
    if scope not in CROSS_SM_SCOPES:
        known = ", ".join(sorted(CROSS_SM_SCOPES | OTHER_SCOPES))
        raise ModelError(f"unknown scope '{scope}' (known: {known})", ".params.scope")
    param = "device.flag_handoff_ns"
    if factor == 1:
        return _sum_of(m, (param,))
    return _scaled(m, param, factor, "one-way handoffs per round trip", "")


MMA: Final = "tensor_efficiency"
L2_NEAR: Final = "memory_hierarchy.l2_near_read_GBps"
L2_HIT: Final = "memory_hierarchy.l2_hit_latency_ns"


def _mainloop_observation(
    m: Measurement,
    gpu: GPUSpec,
    peak: float,
    path: InstructionPath,
    dtype: Dtype,
    tile: CtaTile,
    share: MainloopShare,
    ctas: int,
    useful: float,
) -> Observation:
    """A steady-state mainloop rate: ``ctas`` CTAs of ``tile``, ``share`` beside each, each K
    step the slowest of MMA issue, L2 reads and shared memory (gpusim.kernels.mainloop); the
    predicted TFLOP/s counts ``useful`` of the issued MMA work."""
    mma = f"{MMA}.{path.value}.{dtype.value}"
    elem = storage_bytes(dtype)
    smem_Bps = gpu.shared_mem_bytes_per_clk * MHz_to_Hz(gpu.clock_MHz)

    def predict(v: ParamValues, p: float) -> float:
        sm = SmRates(
            mma_FLOPps=peak * 1e12 * v[mma] / gpu.sm_count,
            l2_near_Bps=GBps_to_Bps(v[L2_NEAR]),
            l2_whole_Bps=GBps_to_Bps(v[L2_NEAR]),
            l2_partition_B=math.inf,
            l2_hit_latency_s=ns_to_s(v[L2_HIT]),
            shared_mem_Bps=smem_Bps,
            hbm_load_latency_s=0.0,
            hbm_Bps=math.inf,
        )
        mma_s, l2_s, smem_s = k_step_terms_s(sm, tile, elem, share)
        step_s = smooth_max(smooth_max(mma_s, l2_s, p), smem_s, p)
        return ctas * tile.step_flops() * useful / step_s / 1e12

    formula = (
        f"{m.name} = {ctas} CTAs x 2 x {tile.tile_m} x {tile.tile_n} x {tile.tile_k} FLOP"
        f"{f' x {useful:.4g} useful/issued' if useful != 1 else ''} / max(MMA at {mma} x "
        f"{peak:g} TFLOP/s, operand bytes at {L2_NEAR} shared by {share.streaming_ctas} CTAs "
        f"(at most stages x bytes / {L2_HIT} each), shared memory at {gpu.shared_mem_bytes_per_clk}"
        f" B/clk)"
    )
    return Observation(m.stats.median, (mma, L2_NEAR, L2_HIT), predict, formula, kinked=True)


def _tile(m: Measurement, ctx: Context) -> Observation | Unused:
    check_unit(m, "TFLOPS")
    path, dtype = path_param(m), dtype_param(m)
    k = int_param(m, "k", required=False)
    measured_blocks = int_param(m, "blocks_per_sm", required=False)
    plates = _nameplates(ctx, m)
    gpu = plates.gpu
    if k is not None and k < DEEP_K:
        return Unused(f"k = {k} is below {DEEP_K}: prologue and epilogue still show")
    blocks = measured_blocks or PERSISTENT_BLOCKS_PER_SM
    elem = storage_bytes(dtype)
    sm90 = path is InstructionPath.wgmma
    tile = CtaTile(
        name="measured",
        tile_m=int_param(m, "tile_m", required=False) or 128,
        tile_n=int_param(m, "tile_n", required=False) or 64,
        tile_k=int_param(m, "tile_k", required=False) or PERSISTENT_K_ROW_BYTES // elem,
        warps_m=2,
        warps_n=1 if sm90 else 2,  # wgmma: one warpgroup issuing two m64 MMAs; mma.sync: 2 x 2
        stages=int_param(m, "stages", required=False) or PERSISTENT_STAGES,
    )
    ctas = blocks * gpu.sm_count
    share = MainloopShare(ctas_per_sm=blocks, streaming_ctas=ctas)
    peak = _peak_TFLOPS(m, plates, dtype)
    return _mainloop_observation(m, gpu, peak, path, dtype, tile, share, ctas, 1.0)


def _gemm(m: Measurement, ctx: Context) -> Observation | Unused:
    check_unit(m, "TFLOPS")
    rows, cols, depth = required_int(m, "m"), required_int(m, "n"), required_int(m, "k")
    dtype = dtype_param(m)
    path = impl_path(m, ctx.device)
    plates = _nameplates(ctx, m)
    gpu = plates.gpu
    tile = library_tiles(path, dtype, gpu)[0]
    sms = gpu.sm_count
    ctas = ceil_div(rows, tile.tile_m) * ceil_div(cols, tile.tile_n)
    steps = tile.steps(depth)
    if ctas < GEMM_MIN_WAVES * sms or steps < GEMM_MIN_STEPS:
        return Unused(
            f"{ctas} CTAs of {tile.name} or {steps} K steps: below {GEMM_MIN_WAVES} waves of "
            f"{GEMM_MIN_STEPS} steps, fill, epilogue and tail still show"
        )
    issued = ctas * tile.tile_m * tile.tile_n * steps * tile.tile_k
    useful = rows * cols * depth / issued
    share = MainloopShare(ctas_per_sm=1, streaming_ctas=sms)
    peak = _peak_TFLOPS(m, plates, dtype)
    return _mainloop_observation(m, gpu, peak, path, dtype, tile, share, sms, useful)


HBM_EFF: Final = "memory_efficiency.hbm"
HBM_LATENCY: Final = "memory_hierarchy.hbm_load_latency_ns"
EXTRACT: Final = "sparse.extract_cycles_per_nonzero"


def _spmm(m: Measurement, ctx: Context) -> Observation:
    check_unit(m, "us")
    rows, depth, cols = required_int(m, "m"), required_int(m, "k"), required_int(m, "n")
    nnz = required_int(m, "nnz")
    if not 0 <= nnz <= rows * depth:
        raise ModelError(f"nnz {nnz} is not between 0 and m x k = {rows * depth}", ".params.nnz")
    try:
        op = SpmmOp(m=rows, k=depth, n=cols, sparsity=1.0 - nnz / (rows * depth))
    except ValueError as err:
        raise ModelError(f"not a Flash-LLM SpMM: {err}", ".params") from None
    split_k = int_param(m, "split_k", required=False)
    tile_m = int_param(m, "tile_m", required=False)
    config = flash_llm_config(cols)
    if tile_m is not None:
        config = replace(config, name=f"{config.name}_m{tile_m}", tile_m=tile_m)
    plates = _nameplates(ctx, m)
    gpu = plates.gpu
    peak = _peak_TFLOPS(m, plates, Dtype.fp16)
    mma = f"{MMA}.{InstructionPath.mma_sync.value}.{Dtype.fp16.value}"
    clock_Hz = MHz_to_Hz(gpu.clock_MHz)
    hbm_nameplate_Bps = GBps_to_Bps(gpu.hbm_bw_GBps)

    def predict(v: ParamValues, _p: float) -> float:
        hbm_Bps = hbm_nameplate_Bps * v[HBM_EFF]
        sm = SmRates(
            mma_FLOPps=peak * 1e12 * v[mma] / gpu.sm_count,
            l2_near_Bps=math.inf,  # the LSCD pipeline reads its activations from L2 unbounded
            l2_whole_Bps=math.inf,
            l2_partition_B=math.inf,
            l2_hit_latency_s=0.0,
            shared_mem_Bps=gpu.shared_mem_bytes_per_clk * clock_Hz,
            hbm_load_latency_s=ns_to_s(v[HBM_LATENCY]),
            hbm_Bps=hbm_Bps,
        )
        plan = lscd_plan(op, sm, gpu, v[EXTRACT] / clock_Hz, config=config, split_k=split_k)
        floor_s = us_to_s(v[FLOOR])
        time_s = floor_s + max(plan.compute_time_s, lscd_hbm_bytes(op, plan) / hbm_Bps)
        reduction = splitk_reduction(op, plan)
        if reduction is not None:
            time_s += floor_s + (reduction.bytes_read + reduction.bytes_written) / hbm_Bps
        return time_s * 1e6

    formula = (
        f"spmm_us = LSCD kernel (gpusim.kernels.spmm, {config.name}, {gpu.sm_count} SMs): waves "
        f"of blocks, each K step max(sparse loads at {HBM_EFF} x {gpu.hbm_bw_GBps:g} GB/s shared"
        f" or one {HBM_LATENCY}, shared memory, MMA at {mma} x {peak:g} TFLOP/s) + nonzeros per "
        f"thread x {EXTRACT} cycles; + {FLOOR}; + the split-K reduction kernel"
    )
    return Observation(
        m.stats.median, (mma, HBM_EFF, HBM_LATENCY, FLOOR, EXTRACT), predict, formula, kinked=True
    )


_BUILDERS: Final[dict[str, Callable[[Measurement, Context], Observation | Unused]]] = {
    "device_read_GBps": _device_memory,
    "device_write_GBps": _device_memory,
    "device_copy_GBps": _device_memory,
    "h2d_GBps": _host_copy,
    "d2h_GBps": _host_copy,
    "p2p_copy_GBps": _p2p,
    "p2p_store_GBps": _p2p,
    "nccl_bus_GBps": lambda m, ctx: _nccl_bus(m, ctx),
    "host_memory_GBps": lambda m, ctx: _host_memory(m, ctx),
    "flag_handoff_ns": lambda m, _ctx: _flag(m, 1.0),
    "flag_round_trip_ns": lambda m, _ctx: _flag(m, 2.0),
    "tile_tflops": _tile,
    "l2_read_GBps": _l2_read,
    "skinny_gemm_tflops": _gemm,
    "gemm_tflops": _gemm,
    "spmm_us": _spmm,
}

KNOWN_NAMES: Final = frozenset(_SUMS) | set(_MAXES) | set(_UNUSED) | set(_BUILDERS)
"""Every measurement name the model knows."""


def observe(m: Measurement, ctx: Context) -> Observation | Unused:
    """The forward model of one measurement (see the module docstring); raises
    :class:`ModelError` for an unknown name or unusable parameters."""
    if m.name not in KNOWN_NAMES:
        raise ModelError(f"unknown measurement name '{m.name}'", ".name")
    if m.name in _UNUSED:
        return Unused(_UNUSED[m.name])
    if not (math.isfinite(m.stats.median) and m.stats.median > 0):
        raise ModelError(f"value must be positive, got {m.stats.median}", ".stats.median")
    if m.name in _SUMS:
        check_unit(m, "ns" if m.name.endswith("_ns") or "_ns_" in m.name else "us")
        return _sum_of(m, _SUMS[m.name])
    if m.name in _MAXES:
        check_unit(m, "us")
        return _max_of(m, *_MAXES[m.name])
    return _BUILDERS[m.name](m, ctx)
