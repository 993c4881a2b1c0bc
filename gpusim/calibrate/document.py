"""The measurement document every kernels_ref program prints, and published microbenchmark
data is written in: one schema-versioned JSON object per program run.

A document is the contract between the CUDA programs and the fitter; both sides read this
module's models, never the raw JSON.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from gpusim.errors import SpecError
from gpusim.spec.base import Spec
from gpusim.spec.provenance import Provenance, read_json, validate_as

SCHEMA_ID = "gpusim.kernels_ref.v1"
RUN_SCHEMA_ID = "gpusim.kernels_ref.run.v1"
"""The summary `gpusim calibrate run` writes beside the documents (run.json): not a document."""
ASSUMPTIONS_PROGRAM = "assumptions"
"""Program name of the document that gives the values no measurement informs: each measurement's
name is a profile path (``device.nccl_sms``), its median the value, its source the reason."""

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NO_DEVICE = 3  # distinct so scripts can tell "no GPU here" from a failure


class Status(StrEnum):
    """Outcome of one program run."""

    ok = "ok"
    no_device = "no_device"
    error = "error"


class DeviceInfo(Spec):
    """The GPU a document was measured on (from cudaGetDeviceProperties)."""

    name: str
    sm_count: int = Field(gt=0)
    compute_capability: str = Field(pattern=r"^\d+\.\d+$")
    sm_clock_khz: int | None = Field(default=None, ge=0)
    mem_clock_khz: int | None = Field(default=None, ge=0)
    mem_bus_width_bits: int | None = Field(default=None, ge=0)
    l2_bytes: int | None = Field(default=None, ge=0)
    driver_version: int | None = None
    runtime_version: int | None = None
    device_count: int = Field(default=1, ge=1)


class BuildInfo(Spec):
    """How the program was compiled."""

    compiled_arch: str = Field(description="e.g. sm_90, the architecture this binary runs as.")
    nvcc_version: str | None = None


class RunInfo(Spec):
    """Where and when the program ran, and its timing discipline."""

    host: str
    timestamp_utc: str
    warmup: int = Field(ge=0)
    repetitions: int = Field(ge=1)


class Statistics(Spec):
    """Summary of the samples of one measurement (same unit)."""

    median: float
    mean: float
    stdev: float = Field(ge=0)
    min: float
    max: float
    p10: float
    p90: float
    n: int = Field(ge=1)


ParamValue = int | float | str | bool


class Measurement(Spec):
    """One measured quantity under one setting of its parameters."""

    name: str = Field(min_length=1, description="What was measured, e.g. launch_api_us.")
    unit: str = Field(min_length=1)
    params: dict[str, ParamValue] = Field(default_factory=dict)
    samples: list[float] = Field(default_factory=list)
    stats: Statistics
    uncertainty: float | None = Field(
        default=None, ge=0, description="One standard error of the median, same unit."
    )
    source: str | None = Field(
        default=None, description="Publication, for published data; absent for own runs."
    )
    low: float | None = Field(
        default=None, ge=0, description="Low end of a published range (assumptions only)."
    )
    high: float | None = Field(
        default=None, ge=0, description="High end of a published range (assumptions only)."
    )

    @model_validator(mode="after")
    def _samples_match_stats(self) -> Measurement:
        if self.samples and len(self.samples) != self.stats.n:
            raise ValueError(f"{len(self.samples)} samples but stats.n = {self.stats.n}")
        return self


class MeasurementDocument(Spec):
    """One program run (or one published source) as the programs print it."""

    schema_id: Literal["gpusim.kernels_ref.v1"] = Field(alias="schema")
    program: str = Field(min_length=1)
    status: Status
    message: str | None = None
    device: DeviceInfo | None = None
    build: BuildInfo | None = None
    run: RunInfo | None = None
    parameters: dict[str, ParamValue] = Field(default_factory=dict)
    measurements: list[Measurement] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ok_has_device(self) -> MeasurementDocument:
        if self.status is Status.ok and self.device is None and not self.is_published:
            raise ValueError(
                "a document with status ok must name its device (unless it is an assumptions "
                "document or every measurement carries a publication source)"
            )
        return self

    @property
    def is_assumptions(self) -> bool:
        """The assumptions document: values given, not measured (see ``gpusim.calibrate.fit``)."""
        return self.program == ASSUMPTIONS_PROGRAM

    @property
    def is_published(self) -> bool:
        """Published data or an assumptions document: nothing here was run on a device of ours,
        so ``device`` may be left out (a publication does not always identify the part)."""
        if self.is_assumptions:
            return True
        return bool(self.measurements) and all(m.source for m in self.measurements)


def document_from_json(raw: Any, origin: str | Path) -> MeasurementDocument:
    """Validate one parsed document; ``origin`` (its file, or e.g. ``launch (stdout)``) names it
    in the one-line SpecErrors."""
    prov = Provenance()
    prov.add((), origin)
    return validate_as(MeasurementDocument, raw, prov)


def load_document(path: str | Path) -> MeasurementDocument:
    """Read and validate one document; problems are one-line SpecErrors naming file and path."""
    return document_from_json(read_json(Path(path)), path)


def parse_document(text: str, origin: str) -> MeasurementDocument:
    """Validate one document given as text (a program's stdout); ``origin`` names it in the
    one-line SpecErrors (e.g. ``launch (stdout)``)."""
    if not text.strip():
        raise SpecError(origin, "$", "no output (expected one JSON document)")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(
            origin, "$", f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    return document_from_json(raw, origin)
