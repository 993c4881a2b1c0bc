"""Reading one measurement's parameters and unit for the forward model
(:mod:`gpusim.calibrate.model`): every failure is a :class:`ModelError` naming the JSON path."""

from __future__ import annotations

from typing import Final

from gpusim.calibrate.document import DeviceInfo, Measurement, ParamValue
from gpusim.spec.base import Dtype
from gpusim.spec.profile import TENSOR_PATHS, InstructionPath, native_tensor_path

UNITS: Final[dict[str, frozenset[str]]] = {
    "us": frozenset({"us", "µs", "usec"}),
    "ns": frozenset({"ns", "nsec"}),
    "GBps": frozenset({"GB/s", "GBps"}),
    "TFLOPS": frozenset({"TFLOP/s", "TFLOPS", "TFLOPs"}),
}


class ModelError(Exception):
    """A measurement the model cannot use as given. ``at`` is the JSON path inside the
    measurement (``.params.src``, ``.unit``), empty for the measurement as a whole."""

    def __init__(self, reason: str, at: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.at = at


def param(m: Measurement, key: str) -> ParamValue:
    """Parameter ``key`` of ``m`` (required)."""
    if key not in m.params:
        raise ModelError(f"{m.name} needs parameter '{key}'", ".params")
    return m.params[key]


def int_param(m: Measurement, key: str, required: bool = True) -> int | None:
    """Integer parameter ``key`` (>= 1); None when optional and absent."""
    if not required and key not in m.params:
        return None
    value = param(m, key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ModelError(f"'{key}' must be an integer, got {value!r}", f".params.{key}")
    if value < 1:
        raise ModelError(f"'{key}' must be >= 1, got {value!r}", f".params.{key}")
    return int(value)


def required_int(m: Measurement, key: str) -> int:
    """Required integer parameter ``key`` (>= 1)."""
    value = int_param(m, key)
    assert value is not None  # required
    return value


def str_param(m: Measurement, key: str) -> str:
    """String parameter ``key``."""
    value = param(m, key)
    if not isinstance(value, str):
        raise ModelError(f"'{key}' must be a string, got {value!r}", f".params.{key}")
    return value


def bool_param(m: Measurement, key: str) -> bool:
    """Boolean parameter ``key``."""
    value = param(m, key)
    if not isinstance(value, bool):
        raise ModelError(f"'{key}' must be true or false, got {value!r}", f".params.{key}")
    return value


def gpu_ref(m: Measurement, key: str, required: bool) -> int | str | None:
    """A GPU given by index or id; None when optional and absent."""
    if not required and key not in m.params:
        return None
    value = param(m, key)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ModelError(f"'{key}' must be a GPU index or id, got {value!r}", f".params.{key}")
    return value


def dtype_param(m: Measurement, key: str = "dtype", default: Dtype | None = None) -> Dtype:
    """The dtype parameter ``key`` (``default`` when absent and one is given)."""
    if default is not None and key not in m.params:
        return default
    value = str_param(m, key)
    try:
        return Dtype(value)
    except ValueError:
        known = ", ".join(d.value for d in Dtype)
        raise ModelError(f"unknown dtype '{value}' (known: {known})", f".params.{key}") from None


def path_param(m: Measurement) -> InstructionPath:
    """The instruction path parameter ``path``."""
    value = str_param(m, "path")
    known = {p.value: p for p in TENSOR_PATHS}
    if value not in known:
        names = ", ".join(known)
        raise ModelError(f"unknown path '{value}' (known: {names})", ".params.path")
    return known[value]


def impl_path(m: Measurement, device: DeviceInfo | None) -> InstructionPath:
    """``impl``: an instruction path, ``own`` (kernels_ref's own GEMM: the mma.sync tile), or
    ``cublas`` (wgmma from compute capability 9.0, else mma_sync)."""
    impl = str_param(m, "impl")
    if impl == "own":
        return InstructionPath.mma_sync
    if impl == "cublas":
        if device is None:
            raise ModelError("impl 'cublas' needs the document's device", ".params.impl")
        return native_tensor_path(device.compute_capability)
    paths = {p.value: p for p in TENSOR_PATHS}
    if impl not in paths:
        known = ", ".join([*paths, "cublas", "own"])
        raise ModelError(f"unknown impl '{impl}' (known: {known})", ".params.impl")
    return paths[impl]


def check_unit(m: Measurement, unit: str) -> None:
    """Fail unless ``m`` is in one of the spellings of ``unit`` (:data:`UNITS`)."""
    if m.unit not in UNITS[unit]:
        expected = " or ".join(sorted(UNITS[unit]))
        raise ModelError(f"{m.name} is in {expected}, not '{m.unit}'", ".unit")
