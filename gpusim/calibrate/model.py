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
    ``device_{read,write,copy}_GBps {bytes}`` = memory_efficiency.hbm x the GPU's hbm_bw_GBps, used
    only at ``bytes >= 8 x l2_bytes`` (the document's device.l2_bytes, else the GPU spec's); a point
    without ``bytes`` is a published asymptotic figure.
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
    ``tile_tflops {path, dtype, blocks_per_sm, k, tile_m, tile_n}`` = tensor_efficiency[path]
    [dtype].large x the GPU's tensor peak, used at deep K (``k >= 1024``) and full occupancy: the
    largest ``blocks_per_sm`` measured for that (path, dtype, tile_m, tile_n, k) in the document
    (a point without ``k`` / ``blocks_per_sm`` is a published full-occupancy figure).
    ``skinny_gemm_tflops`` / ``gemm_tflops {m, n, k, dtype, impl}`` = tensor_efficiency[path]
    [dtype][shape] x peak x useful / issued, where shape is ``skinny`` when min(m, n) <= 64 (the
    GEMM model's rule), issued is the MMA work of the GEMM model's padded CTA tiles, and path is
    ``impl`` (``cublas``: wgmma from compute capability 9.0, else mma_sync); used only when
    compute-bound: operands fit in L2, or the arithmetic intensity reaches the nameplate ridge
    (peak / HBM bandwidth).
Persistent kernel (``ns``)
    ``scheduler_ns_per_task`` = device.scheduler_ns_per_task; ``task_latency_ns`` =
    device.task_latency_ns.
SpMM (``us``)
    ``spmm_us {m, k, n, nnz}`` = :func:`gpusim.kernels.spmm.spmm_cost` with
    tensor_efficiency.mma_sync.fp16[shape] and sparse.extract_ns_per_nonzero; needs a ``dense_us``
    of the same (m, k, n) in the same document (its load rate is the SpMM's).

Known but informing no profile parameter (reported as unused): ``host_flag_one_way_us``,
``flag_handoff_p2p_ns``, ``flag_handoff_hostmem_ns``, ``launch_to_flag_us``,
``graph_launch_api_us``, ``host_chain_us``, ``persistent_us`` (end-to-end times: validation, not
calibration), ``dense_us`` (the reference of ``spmm_us``), and the points the table's last column
excludes.

Whole-kernel rates (``gemm_tflops``) are per issued MMA FLOP with padding charged as the GEMM
model charges it, but without its tail-wave term: a fraction fitted from a whole GEMM absorbs the
wave quantisation of that shape (3 % for 8192^3 on 132 SMs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

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
from gpusim.kernels.gemm import gemm_issued_fraction, gemm_shape_class
from gpusim.kernels.spmm import SpmmShape, dense_load_Bps, spmm_cost
from gpusim.spec.base import Dtype, storage_bytes
from gpusim.spec.topology import LinkKind
from gpusim.units import MB_to_B

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
    "dense_us": "reference for spmm_us of the same shape",
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
    if size is not None and size < HBM_MIN_L2_MULTIPLE * l2:
        return Unused(f"{size} B is below {HBM_MIN_L2_MULTIPLE} x L2 ({l2:.0f} B): not HBM-bound")
    return _scaled(
        m, "memory_efficiency.hbm", plates.gpu.hbm_bw_GBps, f"HBM of {plates.gpu.name}", "GB/s"
    )


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


def _tile(m: Measurement, ctx: Context) -> Observation | Unused:
    check_unit(m, "TFLOPS")
    path, dtype = path_param(m), dtype_param(m)
    k = int_param(m, "k", required=False)
    blocks = int_param(m, "blocks_per_sm", required=False)
    plates = _nameplates(ctx, m)
    peak = _peak_TFLOPS(m, plates, dtype)
    if k is not None and k < DEEP_K:
        return Unused(f"k = {k} is below {DEEP_K}: prologue and epilogue still show")
    if blocks is not None:
        series = (path.value, dtype.value, m.params.get("tile_m"), m.params.get("tile_n"), k)
        best = max(
            (
                int(s.params["blocks_per_sm"])
                for s in ctx.siblings
                if s.name == m.name
                and isinstance(s.params.get("blocks_per_sm"), int)
                and (
                    s.params.get("path"),
                    s.params.get("dtype"),
                    s.params.get("tile_m"),
                    s.params.get("tile_n"),
                    s.params.get("k"),
                )
                == series
            ),
            default=blocks,
        )
        if blocks < best:
            return Unused(f"blocks_per_sm = {blocks} is below the series' full occupancy ({best})")
    param = f"tensor_efficiency.{path.value}.{dtype.value}.large"
    return _scaled(m, param, peak, f"{dtype.value} tensor peak of {plates.gpu.name}", "TFLOP/s")


def _gemm(m: Measurement, ctx: Context) -> Observation | Unused:
    check_unit(m, "TFLOPS")
    rows, cols, depth = required_int(m, "m"), required_int(m, "n"), required_int(m, "k")
    dtype = dtype_param(m)
    path = impl_path(m, ctx.device)
    plates = _nameplates(ctx, m)
    peak = _peak_TFLOPS(m, plates, dtype)
    operand_B = storage_bytes(dtype) * (rows * depth + depth * cols + rows * cols)
    intensity = 2.0 * rows * cols * depth / operand_B
    ridge = peak * 1e12 / (plates.gpu.hbm_bw_GBps * 1e9)
    if operand_B > _l2_bytes(ctx, plates) and intensity < ridge:
        return Unused(
            f"memory-bound: operands exceed L2 and {intensity:.0f} FLOP/B is below the "
            f"nameplate ridge {ridge:.0f} FLOP/B"
        )
    shape, useful = gemm_issued_fraction(rows, cols, depth)
    param = f"tensor_efficiency.{path.value}.{dtype.value}.{shape.value}"
    what = f"{dtype.value} tensor peak of {plates.gpu.name}"
    factor = peak * useful
    if useful == 1:
        return _scaled(m, param, factor, what, "TFLOP/s")
    return _scaled(m, param, factor, f"{what} x {useful:.4g} useful/issued", "TFLOP/s")


def _spmm(m: Measurement, ctx: Context) -> Observation:
    check_unit(m, "us")
    rows, depth, cols = required_int(m, "m"), required_int(m, "k"), required_int(m, "n")
    nnz = required_int(m, "nnz")
    shape = (rows, depth, cols)
    dense = [
        s
        for s in ctx.siblings
        if s.name == "dense_us"
        and (s.params.get("m"), s.params.get("k"), s.params.get("n")) == shape
    ]
    if not dense:
        raise ModelError(f"no dense_us of the same shape (m, k, n) = {shape} in this document")
    plates = _nameplates(ctx, m)
    dense_us = dense[0].stats.median
    tensor = f"tensor_efficiency.mma_sync.fp16.{gemm_shape_class(rows, cols).value}"
    extract = "sparse.extract_ns_per_nonzero"
    peak = _peak_TFLOPS(m, plates, Dtype.fp16)
    sms = plates.gpu.sm_count
    spmm = SpmmShape(m_rows=rows, k_depth=depth, n_cols=cols, nnz=nnz)
    load_Bps = dense_load_Bps(spmm, dense_us * 1e-6)

    def predict(v: ParamValues, p: float) -> float:
        cost = spmm_cost(
            spmm,
            peak_FLOPps=peak * 1e12,
            tensor_efficiency=v[tensor],
            load_Bps=load_Bps,
            extract_s_per_nonzero=v[extract] * 1e-9,
            sms=sms,
            hbm_nameplate_Bps=plates.gpu.hbm_bw_GBps * 1e9,
        )
        return (smooth_max(cost.compute_time_s, cost.memory_time_s, p) + cost.floor_s) * 1e6

    formula = (
        f"spmm_us = max(2mkn / ({peak:g} TFLOP/s x {tensor}), dense_us {dense_us:g} us x "
        f"sparse/dense bytes) + nnz x {extract} / {sms} SMs"
    )
    return Observation(m.stats.median, (tensor, extract), predict, formula, kinked=True)


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
    "skinny_gemm_tflops": _gemm,
    "gemm_tflops": _gemm,
    "spmm_us": lambda m, ctx: _spmm(m, ctx),
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
