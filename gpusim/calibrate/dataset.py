"""A calibration folder: measurement documents (kernels_ref output or published data) and the
assumptions document, read and checked.

Every ``*.json`` file of the folder but the run summary (``run.json``) is a
:class:`~gpusim.calibrate.document.MeasurementDocument`.
Documents with status ``no_device`` (the program ran where there is no GPU) are skipped; status
``error`` is an error. The document whose program is ``assumptions`` gives the values no
measurement informs: each measurement's name is a profile path (``device.nccl_sms``,
``tensor_efficiency.mma_sync.tf32``), its ``stats.median`` the value, its ``uncertainty``
(optional) one standard error and its ``source`` (required) the reason: ``ASSUMPTION: ...`` or the
derivation. Its ``parameters`` may hold ``profile_id`` and ``description``, the defaults of the
profile the folder produces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from gpusim.calibrate.document import (
    RUN_SCHEMA_ID,
    Measurement,
    MeasurementDocument,
    ParamValue,
    Status,
    document_from_json,
)
from gpusim.calibrate.params import is_fraction, is_known
from gpusim.errors import SpecError
from gpusim.spec.provenance import read_json

SETTINGS = ("profile_id", "description")
"""Assumptions-document parameters that set defaults of the fitted profile."""


@dataclass(frozen=True)
class Located:
    """A measurement and where it is."""

    file: Path
    index: int
    doc: MeasurementDocument

    @property
    def measurement(self) -> Measurement:
        """The measurement itself."""
        return self.doc.measurements[self.index]

    def at(self, sub: str = "") -> str:
        """JSON path of the measurement (or of ``sub`` inside it)."""
        return f"$.measurements[{self.index}]{sub}"

    def error(self, reason: str, sub: str = "") -> SpecError:
        """A one-line error at this measurement."""
        return SpecError(self.file, self.at(sub), reason)


@dataclass(frozen=True)
class Assumption:
    """A value given by the assumptions document."""

    path: str
    value: float
    uncertainty: float | None
    source: str
    where: Located
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Dataset:
    """The usable contents of a calibration folder."""

    folder: Path
    documents: tuple[tuple[Path, MeasurementDocument], ...]
    """Status-ok measurement documents (not the assumptions)."""
    assumptions: dict[str, Assumption]
    settings: dict[str, ParamValue]
    no_device: tuple[Path, ...]

    def measurements(self) -> list[Located]:
        """Every measurement of the measurement documents, in file order."""
        return [
            Located(file, i, doc)
            for file, doc in self.documents
            for i in range(len(doc.measurements))
        ]


def load_folder(folder: str | Path) -> Dataset:
    """Read every document of ``folder``; problems are one-line SpecErrors."""
    root = Path(folder)
    if not root.is_dir():
        raise SpecError(root, "$", "not a folder")
    files = sorted(root.glob("*.json"))
    if not files:
        raise SpecError(root, "$", f"no measurement documents (*.json) in {root}")
    documents: list[tuple[Path, MeasurementDocument]] = []
    assumption_docs: list[tuple[Path, MeasurementDocument]] = []
    no_device: list[Path] = []
    for file in files:
        raw = read_json(file)
        if isinstance(raw, dict) and raw.get("schema") == RUN_SCHEMA_ID:
            continue  # the run summary `gpusim calibrate run` writes beside the documents
        doc = document_from_json(raw, file)
        if doc.status is Status.error:
            raise SpecError(file, "$.status", f"the program failed: {doc.message or 'no message'}")
        if doc.status is Status.no_device:
            no_device.append(file)
        elif doc.is_assumptions:
            assumption_docs.append((file, doc))
        else:
            documents.append((file, doc))
    if not documents and no_device:
        raise SpecError(
            root, "$", f"no measurements: every document in {root} has status no_device (no GPU)"
        )
    assumptions, settings = _assumptions(assumption_docs)
    return Dataset(root, tuple(documents), assumptions, settings, tuple(no_device))


def _assumptions(
    docs: list[tuple[Path, MeasurementDocument]],
) -> tuple[dict[str, Assumption], dict[str, ParamValue]]:
    given: dict[str, Assumption] = {}
    settings: dict[str, ParamValue] = {}
    for file, doc in docs:
        for key, value in doc.parameters.items():
            if key not in SETTINGS:
                raise SpecError(
                    file, f"$.parameters.{key}", f"unknown setting (known: {', '.join(SETTINGS)})"
                )
            if key in settings and settings[key] != value:
                raise SpecError(file, f"$.parameters.{key}", "set differently in two documents")
            settings[key] = value
        for i in range(len(doc.measurements)):
            a = _assumption(Located(file, i, doc))
            if a.path in given:
                other = given[a.path].where
                raise a.where.error(
                    f"'{a.path}' is given twice (also {other.file} {other.at()})", ".name"
                )
            given[a.path] = a
    return given, settings


def _assumption(loc: Located) -> Assumption:
    m = loc.measurement
    if not is_known(m.name):
        raise loc.error(
            f"unknown profile parameter '{m.name}' (an assumption is named by its profile path, "
            "e.g. device.nccl_sms)",
            ".name",
        )
    if not m.source or not m.source.strip():
        raise loc.error("an assumption needs its source: ASSUMPTION: ... or the derivation", "")
    value = m.stats.median
    if not math.isfinite(value) or value < 0 or (is_fraction(m.name) and not 0 < value <= 1):
        bound = "in (0, 1]" if is_fraction(m.name) else ">= 0"
        raise loc.error(f"{m.name} must be {bound}, got {value}", ".stats.median")
    return Assumption(m.name, value, m.uncertainty, m.source, loc, m.low, m.high)
