"""Reading spec files: JSON parsing, reference inlining, overrides, validation, semantic checks.

Every failure is a :class:`~gpusim.errors.SpecError` naming the file, the JSON path inside that
file and the reason. References are inlined at the raw-JSON level first, remembering which file
each subtree came from, so a single pydantic validation can still blame the right file.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from gpusim.errors import SpecError, json_path
from gpusim.spec.checks import check_topology, check_workload_against_topology
from gpusim.spec.overrides import apply_override
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.refs import resolve_ref
from gpusim.spec.resources import (
    REPLACED_BY_BLOCK_RESOURCES,
    KernelResourcesRef,
    ResourceReport,
)
from gpusim.spec.scenario import ResolvedScenario
from gpusim.spec.topology import Topology
from gpusim.spec.workload import Workload

Loc = tuple[int | str, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass
class Provenance:
    """Which file each subtree of an inlined document came from."""

    origins: dict[Loc, tuple[str, Loc]] = field(default_factory=dict)
    overridden: set[Loc] = field(default_factory=set)

    def add(self, loc: Loc, file: str | Path, inner: Loc = ()) -> None:
        """Record that the subtree at ``loc`` is the document at ``inner`` of ``file``."""
        self.origins[loc] = (str(file), inner)

    def forget(self, loc: Loc) -> None:
        """Drop what is recorded at and below ``loc`` (its subtree is being replaced)."""
        for key in [k for k in self.origins if k[: len(loc)] == loc]:
            del self.origins[key]

    def blame(self, loc: Loc, reason: str) -> SpecError:
        """The error for a problem at ``loc`` of the inlined document."""
        best = max((p for p in self.origins if loc[: len(p)] == p), key=len, default=None)
        if best is None:
            return SpecError(None, json_path(loc), reason)
        file, inner = self.origins[best]
        if any(loc[: len(o)] == o for o in self.overridden):
            reason += " (value set by an override)"
        return SpecError(file, json_path(inner + loc[len(best) :]), reason)


def read_json(path: Path) -> Any:
    """Parse a JSON file; missing or malformed files become one-line SpecErrors."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(path, "$", "file not found") from None
    except OSError as exc:
        raise SpecError(path, "$", f"cannot read file: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(
            path, "$", f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None


def _data_loc(data: Any, loc: Loc) -> Loc:
    """Keep the parts of a pydantic location that index the input data: pydantic also names
    union members by type ('Topology', 'str') and tagged-union members by their tag value."""
    out: list[int | str] = []
    node = data
    tag_skipped = False
    for part in loc:
        if isinstance(node, dict) and not tag_skipped and part in _tags(node):
            tag_skipped = True
            continue
        if isinstance(part, str) and _is_type_name(part):
            continue
        if _indexes(node, part):
            node, tag_skipped = node[part], False
            out.append(part)
        elif isinstance(node, dict) and isinstance(part, str):
            out.append(part)  # a missing or unknown key: still the place to point at
            node = None
    return tuple(out)


def _indexes(node: Any, part: int | str) -> bool:
    if isinstance(node, dict):
        return isinstance(part, str) and part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _tags(node: dict[str, Any]) -> set[Any]:
    return {node.get(key) for key in ("kind", "op", "name") if isinstance(node.get(key), str)}


def _is_type_name(part: str) -> bool:
    # pydantic's names for union members: class names ('Topology'), 'str', 'function-after[...]'
    return part[:1].isupper() or part in {"str", "int", "float", "none"} or "[" in part


def _validation_error(exc: ValidationError, data: Any, prov: Provenance) -> SpecError:
    candidates = []
    for err in exc.errors():
        loc = _data_loc(data, tuple(err["loc"]))
        is_ref_branch = err["type"] in {"string_type", "none_required"}
        candidates.append((is_ref_branch, -len(loc), loc, err["msg"]))
    candidates.sort(key=lambda c: (c[0], c[1]))
    _, _, loc, msg = candidates[0]
    return prov.blame(loc, msg)


def validate_as(model: type[M], data: Any, prov: Provenance) -> M:
    """Validate raw data as ``model``; the first (deepest) error becomes a SpecError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, data, prov) from None


def _inline(
    kind: str, ref: Any, base_dir: Path, loc: Loc, prov: Provenance, blame_loc: Loc | None = None
) -> Any:
    """Replace a string reference at ``loc`` by the raw document it names (recursively).
    ``blame_loc`` is where a bad reference is reported, when that is not ``loc`` itself."""
    if not isinstance(ref, str):
        if kind == "topology" and isinstance(ref, dict):
            _inline_components(ref, base_dir, loc, prov)
        return ref
    origin_file, origin_inner = _origin_of(loc if blame_loc is None else blame_loc, prov)
    path = resolve_ref(kind, ref, base_dir, origin_file, json_path(origin_inner))
    raw = read_json(path)
    prov.forget(loc)
    prov.add(loc, path)
    if kind == "topology" and isinstance(raw, dict):
        _inline_components(raw, path.parent, loc, prov)
    return raw


def _origin_of(loc: Loc, prov: Provenance) -> tuple[str, Loc]:
    best = max((p for p in prov.origins if loc[: len(p)] == p), key=len, default=None)
    if best is None:
        return "<inline>", loc
    file, inner = prov.origins[best]
    return file, inner + loc[len(best) :]


def _inline_components(topo: dict[str, Any], base_dir: Path, loc: Loc, prov: Provenance) -> None:
    devices = topo.get("devices")
    if not isinstance(devices, list):
        return
    for i, dev in enumerate(devices):
        if not isinstance(dev, dict):
            continue
        kind = dev.get("kind")
        if kind == "gpu" and isinstance(dev.get("model"), str):
            dev["model"] = _inline(
                "gpu", dev["model"], base_dir, (*loc, "devices", i, "model"), prov
            )
        if kind == "cpu":
            if isinstance(dev.get("model"), str):
                dev["model"] = _inline(
                    "cpu", dev["model"], base_dir, (*loc, "devices", i, "model"), prov
                )
            if isinstance(dev.get("memory"), str):
                dev["memory"] = _inline(
                    "memory", dev["memory"], base_dir, (*loc, "devices", i, "memory"), prov
                )


def load_resource_report(path: str | Path) -> ResourceReport:
    """Load and validate a ptxas resource report (``gpusim calibrate build`` writes them)."""
    return load_model(ResourceReport, path)


def _resolve_resource_refs(node: Any, loc: Loc, prov: Provenance) -> None:
    """Replace, in place, every ``block_resources`` reference under ``node`` (an object with a
    ``report`` key) by the :class:`KernelResources` object it names."""
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if key == "block_resources" and isinstance(value, dict) and "report" in value:
                node[key] = _kernel_resources(node, value, (*loc, key), prov)
            else:
                _resolve_resource_refs(value, (*loc, key), prov)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _resolve_resource_refs(item, (*loc, i), prov)


def _kernel_resources(
    owner: dict[str, Any], raw_ref: dict[str, Any], loc: Loc, prov: Provenance
) -> dict[str, Any]:
    """The KernelResources (raw) that the reference ``raw_ref`` at ``loc`` names; every problem
    is blamed on the file and JSON path of the reference (the report's own defects on the
    report)."""
    try:
        ref = KernelResourcesRef.model_validate(raw_ref)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise prov.blame((*loc, *_data_loc(raw_ref, tuple(err["loc"]))), err["msg"]) from None
    clash = [name for name in REPLACED_BY_BLOCK_RESOURCES if name in owner]
    if clash:
        raise prov.blame(
            loc,
            f"a block_resources reference replaces {', '.join(clash)}: give one or the other",
        )
    origin_file, origin_inner = _origin_of(loc, prov)
    path = resolve_ref(
        "resources",
        ref.report,
        Path(origin_file).parent,
        origin_file,
        json_path((*origin_inner, "report")),
    )
    report = load_resource_report(path)
    try:
        record = report.find(ref.kernel, ref.arch, ref.program)
    except LookupError as exc:
        raise prov.blame((*loc, "kernel"), f"{path}: {exc}") from None
    if record.registers_per_thread == 0:
        raise prov.blame(
            (*loc, "kernel"), f"{path}: kernel '{ref.kernel}' reports 0 registers per thread"
        )
    return ref.resolve(record).model_dump(mode="json", exclude_none=True)


def _raw_scenario(raw: Any, file: Path, prov: Provenance) -> dict[str, Any]:
    prov.add((), file)
    if not isinstance(raw, dict):
        raise SpecError(file, "$", "a scenario must be a JSON object")
    base = file.parent
    doc = dict(raw)
    for key in ("topology", "workload"):
        if key not in doc:
            raise SpecError(file, json_path((key,)), "Field required")
        doc[key] = _inline(key, doc[key], base, (key,), prov)
    if doc.get("profile") is not None:
        doc["profile"] = _inline("profile", doc["profile"], base, ("profile",), prov)
    return doc


def _default_profile(doc: dict[str, Any], base: Path, file: Path, prov: Provenance) -> None:
    """Use the topology's default profile when the scenario names none (after overrides, so a
    swapped topology brings its own default)."""
    if doc.get("profile") is not None:
        return
    topo = doc["topology"]
    default = topo.get("default_profile") if isinstance(topo, dict) else None
    if not isinstance(default, str):
        raise SpecError(
            file, "$.profile", "no profile given and the topology names no default_profile"
        )
    doc["profile"] = _inline(
        "profile", default, base, ("profile",), prov, blame_loc=("topology", "default_profile")
    )


class _ValidatedCache:
    """Recently validated topologies and profiles, by their raw documents. A sweep resolves
    the same topology hundreds of times; when a raw document equals one already validated (and
    checked), the validated object is reused, since pydantic accepts model instances as they
    are. Equal raw documents cannot fail, so no error is ever lost."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.entries: list[tuple[Any, BaseModel]] = []

    def get(self, raw: Any) -> BaseModel | None:
        for known_raw, model in self.entries:
            if known_raw == raw:
                return model
        return None

    def put(self, raw: Any, model: BaseModel) -> None:
        self.entries.insert(0, (copy.deepcopy(raw), model))
        del self.entries[self.size :]


_VALIDATED = {"topology": _ValidatedCache(), "profile": _ValidatedCache()}


def _finish_scenario(doc: dict[str, Any], prov: Provenance) -> ResolvedScenario:
    raw_parts = {key: doc[key] for key in _VALIDATED if isinstance(doc.get(key), dict)}
    fast = dict(doc)
    for key, raw in raw_parts.items():
        known = _VALIDATED[key].get(raw)
        if known is not None:
            fast[key] = known
    scenario = validate_as(ResolvedScenario, fast, prov)
    if fast["topology"] is doc["topology"]:
        for loc, reason in check_topology(scenario.topology):
            raise prov.blame(("topology", *loc), reason)
    for key, raw in raw_parts.items():
        if fast[key] is raw:
            _VALIDATED[key].put(raw, getattr(scenario, key))
    for loc, reason in check_workload_against_topology(scenario.workload, scenario.topology):
        raise prov.blame(("workload", *loc), reason)
    return scenario


def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> ResolvedScenario:
    """Load, inline, override (dotted paths) and validate a scenario file."""
    file = Path(path)
    return scenario_from_dict(read_json(file), file, overrides)


def scenario_from_dict(
    raw: Any, file: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> ResolvedScenario:
    """Validate a scenario document. ``file`` names it in errors and anchors relative references
    (default: an inline document in the current folder); ``overrides`` map dotted paths to values
    (as ``gpusim run --set``). ``raw`` is not modified."""
    origin = Path(file) if file is not None else Path.cwd() / "<inline>"
    prov = Provenance()
    doc = _raw_scenario(copy.deepcopy(raw), origin, prov)

    def inline(kind: str, ref: str, loc: Loc) -> Any:
        return _inline(kind, ref, origin.parent, loc, prov)

    for dotted, value in (overrides or {}).items():
        prov.overridden.add(apply_override(doc, dotted, copy.deepcopy(value), origin, inline))
    _default_profile(doc, origin.parent, origin, prov)
    _anchor_trace_file(doc, prov)
    _resolve_resource_refs(doc.get("workload"), ("workload",), prov)
    return _finish_scenario(doc, prov)


def _anchor_trace_file(doc: dict[str, Any], prov: Provenance) -> None:
    """A relative routing ``trace_file`` names a file beside the document that wrote it (the
    scenario or the referenced workload), not one in the current folder: make it absolute."""
    workload = doc.get("workload")
    routing = workload.get("routing") if isinstance(workload, dict) else None
    if not isinstance(routing, dict):
        return
    trace = routing.get("trace_file")
    if not isinstance(trace, str) or Path(trace).is_absolute():
        return
    file, inner = _origin_of(("workload", "routing", "trace_file"), prov)
    anchored = resolve_ref("routing trace", trace, Path(file).parent, file, json_path(inner))
    routing["trace_file"] = str(anchored.resolve())


def load_topology(path: str | Path) -> Topology:
    """Load and validate a topology file, including its semantic checks."""
    file = Path(path)
    prov = Provenance()
    prov.add((), file)
    raw = read_json(file)
    if isinstance(raw, dict):
        _inline_components(raw, file.parent, (), prov)
    topo = validate_as(Topology, raw, prov)
    for loc, reason in check_topology(topo):
        raise prov.blame(loc, reason)
    return topo


def load_model(model: type[M], path: str | Path) -> M:
    """Load and validate a file holding one spec object with no references (profile, component)."""
    file = Path(path)
    prov = Provenance()
    prov.add((), file)
    return validate_as(model, read_json(file), prov)


def load_workload(path: str | Path) -> Workload:
    """Load and validate a workload file (checks against a topology happen in a scenario)."""
    file = Path(path)
    prov = Provenance()
    prov.add((), file)
    raw = read_json(file)
    _resolve_resource_refs(raw, (), prov)
    try:
        return TypeAdapter(Workload).validate_python(raw)
    except ValidationError as exc:
        raise _validation_error(exc, raw, prov) from None


def load_profile(path: str | Path) -> CalibrationProfile:
    """Load and validate a calibration profile file."""
    return load_model(CalibrationProfile, path)
