"""Reading spec files: JSON parsing, reference inlining, overrides, validation, semantic checks.

Every failure is a :class:`~gpusim.errors.SpecError` naming the file, the JSON path inside that
file and the reason. References are inlined at the raw-JSON level first, remembering which file
each subtree came from, so a single pydantic validation can still blame the right file
(:mod:`gpusim.spec.provenance` reads the JSON and does the blaming).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from gpusim.errors import SpecError, json_path
from gpusim.spec.checks import check_topology, check_workload_against_topology
from gpusim.spec.model_zoo import TransformerModel
from gpusim.spec.overrides import apply_override
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.provenance import (
    Loc,
    M,
    Provenance,
    check_magnitudes,
    data_loc,
    read_json,
    validate_as,
    validation_error,
    within_magnitude,
)
from gpusim.spec.refs import resolve_ref
from gpusim.spec.resources import (
    REPLACED_BY_BLOCK_RESOURCES,
    KernelResourcesRef,
    ResourceReport,
)
from gpusim.spec.scenario import Options, ResolvedScenario
from gpusim.spec.topology import Topology
from gpusim.spec.workload import Workload

_SHAREABLE = frozenset({"topology", "profile"})
"""Kinds of reference an :class:`InlineCache` keeps: what a sweep's points share."""


@dataclass
class InlineCache:
    """Topologies and profiles already read and inlined (components included), and their
    validated models, for resolving many scenarios from one base (a sweep's points): each file
    is read once per cache, and each distinct document validated and checked once.

    The documents are shared between the scenarios resolved with the cache and never mutated:
    an override into one copies that subtree first. Files are assumed not to change while a
    cache is in use (one cache per sweep run). Pickles without its validated models (a worker
    revalidates once), so the parent can hand its documents to workers that cannot read the
    files. A resolution that takes a document this process read itself (not one that came
    pickled) counts as reading files (see :func:`resolve_validated`)."""

    docs: dict[tuple[str, str, str], tuple[Any, tuple[tuple[Loc, str, Loc], ...]]] = field(
        default_factory=dict
    )
    validated: dict[int, tuple[Any, BaseModel, bool]] = field(default_factory=dict)
    read_here: set[tuple[str, str, str]] = field(default_factory=set)
    """The keys of the documents this process read (the rest came pickled)."""

    def __getstate__(self) -> dict[str, Any]:
        return {"docs": self.docs, "validated": {}, "read_here": set()}

    def inline(
        self,
        kind: str,
        ref: str,
        base_dir: Path,
        path_of_ref: Callable[[], Path],
        loc: Loc,
        prov: Provenance,
    ) -> Any:
        """The raw document ``ref`` names from ``base_dir`` (shared; ``path_of_ref`` finds its
        file the first time), its provenance recorded at ``loc``."""
        key = (kind, ref, str(base_dir))
        entry = self.docs.get(key)
        if entry is None:
            path = path_of_ref()
            sub = Provenance()
            raw = _inline(kind, str(path), path.parent, (), sub)
            entry = (raw, tuple((at, file, inner) for at, (file, inner) in sub.origins.items()))
            self.docs[key] = entry
            self.read_here.add(key)
        if key in self.read_here:
            prov.read_files = True
        raw, origins = entry
        prov.forget(loc)
        for at, file, inner in origins:
            prov.add((*loc, *at), file, inner)
        return raw

    def model_of(self, raw: Any, checked: bool = True) -> BaseModel | None:
        """The validated model of the shared document ``raw`` (by identity), if known; with
        ``checked``, only one whose semantic checks ran."""
        entry = self.validated.get(id(raw))
        if entry is None or entry[0] is not raw or (checked and not entry[2]):
            return None
        return entry[1]

    def remember(self, raw: Any, model: BaseModel, checked: bool = True) -> None:
        """Keep ``model`` as the validation of the shared document ``raw`` (``checked``:
        its semantic checks ran)."""
        known = self.validated.get(id(raw))
        if known is not None and known[0] is raw and known[2] and not checked:
            return  # keep the checked one
        self.validated[id(raw)] = (raw, model, checked)

    def is_shared(self, raw: Any) -> bool:
        """Whether ``raw`` is one of the documents this cache hands out."""
        if type(raw) in _SCALARS:
            return False
        return any(doc is raw for doc, _ in self.docs.values())


def _inline(
    kind: str,
    ref: Any,
    base_dir: Path,
    loc: Loc,
    prov: Provenance,
    blame_loc: Loc | None = None,
    cache: InlineCache | None = None,
) -> Any:
    """Replace a string reference at ``loc`` by the raw document it names (recursively).
    ``blame_loc`` is where a bad reference is reported, when that is not ``loc`` itself. With
    ``cache``, topologies and profiles come from (and go into) it, shared."""
    if not isinstance(ref, str):
        if kind == "topology" and isinstance(ref, dict):
            _inline_components(ref, base_dir, loc, prov)
        return ref

    def path_of_ref() -> Path:
        origin_file, origin_inner = _origin_of(loc if blame_loc is None else blame_loc, prov)
        return resolve_ref(kind, ref, base_dir, origin_file, json_path(origin_inner))

    if cache is not None and kind in _SHAREABLE:
        return cache.inline(kind, ref, base_dir, path_of_ref, loc, prov)
    path = path_of_ref()
    prov.read_files = True
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
        if kind == "cpu" and isinstance(dev.get("model"), str):
            dev["model"] = _inline(
                "cpu", dev["model"], base_dir, (*loc, "devices", i, "model"), prov
            )
        if kind in ("cpu", "storage") and isinstance(dev.get("memory"), str):
            dev["memory"] = _inline(
                "memory", dev["memory"], base_dir, (*loc, "devices", i, "memory"), prov
            )


MODEL_KEYS: dict[str, tuple[str, ...]] = {
    "llm_inference": ("model",),
    "speculative_decoding": ("target", "draft"),
}
"""The fields of each workload kind that name a zoo model."""


def _inline_model(workload: Any, base_dir: Path, loc: Loc, prov: Provenance) -> None:
    """A workload's ``model`` (a speculative workload's ``target`` and ``draft``) given by name
    (``models/``) or path becomes the model's document."""
    if not isinstance(workload, dict):
        return
    keys = MODEL_KEYS.get(str(workload.get("kind")), ())
    for key in keys:
        if isinstance(workload.get(key), str):
            workload[key] = _inline("model", workload[key], base_dir, (*loc, key), prov)


def load_transformer(ref: str, base_dir: Path | None = None) -> TransformerModel:
    """A model of the zoo by name (``llama-3.2-1b``) or a path to a model file."""
    where = Path.cwd() if base_dir is None else base_dir
    path = resolve_ref("model", ref, where, "<model reference>", "$")
    return load_model(TransformerModel, path)


def load_resource_report(path: str | Path) -> ResourceReport:
    """Load and validate a ptxas resource report (``gpusim calibrate build`` writes them)."""
    return load_model(ResourceReport, path)


def _resolve_resource_refs(node: Any, loc: Loc, prov: Provenance) -> None:
    """Replace, in place, every ``block_resources`` reference under ``node`` (an object with a
    ``report`` key) by the :class:`KernelResources` object it names."""
    if _has_resource_ref(node):
        _replace_resource_refs(node, loc, prov)


def _replace_resource_refs(node: Any, loc: Loc, prov: Provenance) -> None:
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if key == "block_resources" and isinstance(value, dict) and "report" in value:
                node[key] = _kernel_resources(node, value, (*loc, key), prov)
            else:
                _replace_resource_refs(value, (*loc, key), prov)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _replace_resource_refs(item, (*loc, i), prov)


def _has_resource_ref(node: Any) -> bool:
    """Whether there is a ``block_resources`` reference under ``node`` (a quick look, with no
    locations, before the walk that replaces them)."""
    kind = type(node)
    if kind is dict:
        ref = node.get("block_resources")
        if isinstance(ref, dict) and "report" in ref:
            return True
        return any(type(v) not in _SCALARS and _has_resource_ref(v) for v in node.values())
    if kind is list:
        return any(type(v) not in _SCALARS and _has_resource_ref(v) for v in node)
    if kind in _SCALARS:
        return False
    return isinstance(node, dict | list)  # not plain JSON: let the walk look


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
        raise prov.blame((*loc, *data_loc(raw_ref, tuple(err["loc"]))), err["msg"]) from None
    clash = [name for name in REPLACED_BY_BLOCK_RESOURCES if name in owner]
    if clash:
        raise prov.blame(
            loc,
            f"a block_resources reference replaces {', '.join(clash)}: give one or the other",
        )
    origin_file, origin_inner = _origin_of(loc, prov)
    prov.read_files = True
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


def _raw_scenario(
    raw: Any, file: Path, prov: Provenance, cache: InlineCache | None
) -> dict[str, Any]:
    prov.add((), file)
    if not isinstance(raw, dict):
        raise SpecError(file, "$", "a scenario must be a JSON object")
    base = file.parent
    doc = dict(raw)
    for key in ("topology", "workload"):
        if key not in doc:
            raise SpecError(file, json_path((key,)), "Field required")
        doc[key] = _inline(key, doc[key], base, (key,), prov, cache=cache)
    _inline_model(doc["workload"], base, ("workload",), prov)
    if doc.get("profile") is not None:
        doc["profile"] = _inline("profile", doc["profile"], base, ("profile",), prov, cache=cache)
    return doc


def _default_profile(
    doc: dict[str, Any], base: Path, file: Path, prov: Provenance, cache: InlineCache | None
) -> None:
    """Use the topology's default profile when the scenario names none (after overrides, so a
    swapped topology brings its own default)."""
    if doc.get("profile") is not None:
        return
    topo = doc["topology"]
    if not isinstance(topo, dict):
        return  # not a topology at all: validation says so, at $.topology
    default = topo.get("default_profile")
    if default is not None and not isinstance(default, str):
        raise prov.blame(("topology", "default_profile"), "Input should be a valid string")
    if not isinstance(default, str):
        raise SpecError(
            file, "$.profile", "no profile given and the topology names no default_profile"
        )
    doc["profile"] = _inline(
        "profile",
        default,
        base,
        ("profile",),
        prov,
        blame_loc=("topology", "default_profile"),
        cache=cache,
    )


class _ValidatedCache:
    """Recently validated topologies and profiles, by their raw documents. A sweep resolves
    the same topology hundreds of times; when a raw document equals one already validated (and
    checked), the validated object is reused, since pydantic accepts model instances as they
    are. Equal raw documents cannot fail, so no error is ever lost. Safe to share between
    threads (a lock guards the entries; the models themselves are immutable)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.entries: list[tuple[Any, BaseModel]] = []
        self.lock = threading.Lock()

    def get(self, raw: Any) -> BaseModel | None:
        """The validated model of a raw document equal to ``raw``, if one is remembered."""
        with self.lock:
            for known_raw, model in self.entries:
                if known_raw == raw:
                    return model
        return None

    def put(self, raw: Any, model: BaseModel) -> None:
        """Remember ``model`` as the validation of ``raw`` (a private copy of it)."""
        entry = (copy.deepcopy(raw), model)
        with self.lock:
            self.entries.insert(0, entry)
            del self.entries[self.size :]


_VALIDATED = {"topology": _ValidatedCache(), "profile": _ValidatedCache()}


def _finish_scenario(
    doc: dict[str, Any], prov: Provenance, cache: InlineCache | None, checked: bool = True
) -> ResolvedScenario:
    """Validate the inlined, overridden ``doc``; with ``checked``, also run the checks that
    can only refuse it (magnitudes, the topology's and the workload's semantic checks)."""
    raw_parts = {key: doc[key] for key in _VALIDATED if isinstance(doc.get(key), dict)}
    fast = dict(doc)
    for key, raw in raw_parts.items():
        known = cache.model_of(raw, checked) if cache is not None else None
        if known is None:
            known = _VALIDATED[key].get(raw)
        if known is not None:
            fast[key] = known
    scenario = validate_as(ResolvedScenario, fast, prov, checked=checked)
    if checked and fast["topology"] is doc["topology"]:
        for loc, reason in check_topology(scenario.topology):
            raise prov.blame(("topology", *loc), reason)
    for key, raw in raw_parts.items():
        if checked and fast[key] is raw:
            _VALIDATED[key].put(raw, getattr(scenario, key))
        if cache is not None and cache.is_shared(raw):
            cache.remember(raw, getattr(scenario, key), checked)
    if checked:
        for loc, reason in check_workload_against_topology(scenario.workload, scenario.topology):
            raise prov.blame(("workload", *loc), reason)
    return scenario


def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> ResolvedScenario:
    """Load, inline, override (dotted paths) and validate a scenario file."""
    file = Path(path)
    return scenario_from_dict(read_json(file), file, overrides)


def scenario_from_dict(
    raw: Any,
    file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    cache: InlineCache | None = None,
) -> ResolvedScenario:
    """Validate a scenario document. ``file`` names it in errors and anchors relative references
    (default: an inline document in the current folder); ``overrides`` map dotted paths to values
    (as ``gpusim run --set``). ``raw`` is not modified. With ``cache``, referenced topologies and
    profiles are read and validated once per cache (the same scenario either way)."""
    return _resolve(raw, file, overrides, cache, checked=True)[0]


def resolve_validated(
    raw: Any, file: str | Path, overrides: dict[str, Any], cache: InlineCache
) -> tuple[ResolvedScenario, bool]:
    """:func:`scenario_from_dict` of a scenario validated before (a sweep's worker resolving a
    point its calling process validated, from the same base, overrides and cached documents),
    without the checks that can only refuse it: its numbers' magnitudes, the topology's and
    the workload's semantic checks (equal content passes them again). Also says whether the
    resolution consulted the file system beyond ``cache`` (read a file, anchored a path): when
    it did not, the scenario is made of the inputs alone, the very scenario validated; when it
    did, the caller compares content hashes to know."""
    scenario, prov = _resolve(raw, file, overrides, cache, checked=False)
    return scenario, prov.read_files


_PLAIN_VALUES = frozenset({int, float, bool, type(None)})
"""The exact types of the override values :func:`resolve_like` takes (never a reference)."""
_WORKLOAD_ADAPTER: TypeAdapter[Any] = TypeAdapter(Workload)


class _ReferenceError(Exception):
    """An override went through a reference (:func:`resolve_like` leaves it to the general
    path)."""


def _no_inlining(kind: str, ref: str, loc: Loc) -> Any:
    raise _ReferenceError(kind)


def only_workload_values(overrides: dict[str, Any]) -> bool:
    """Whether every override sets a number, a boolean or null under ``workload`` or
    ``options`` (what :func:`resolve_like` resolves)."""
    return all(
        type(value) in _PLAIN_VALUES and dotted.startswith(("workload.", "options."))
        for dotted, value in overrides.items()
    )


def resolve_like(
    template: ResolvedScenario, raw: Any, overrides: dict[str, Any], checked: bool = False
) -> ResolvedScenario | None:
    """:func:`resolve_validated` of the scenario ``raw`` with ``overrides`` (with ``checked``,
    :func:`scenario_from_dict`: the checks that can only refuse it run too), made from
    ``template``: a scenario resolved (and, with ``checked``, checked) from the same ``raw``
    with overrides that all passed :func:`only_workload_values`, without reading a file. The
    template's name, description, topology and profile (the same objects), with the workload
    and options validated from ``raw``'s and the overrides; its content hash is not computed.
    None when the overrides do not pass :func:`only_workload_values`, go through a reference,
    do not validate or fail a check: the caller then takes the general path (which blames
    what is wrong)."""
    if not isinstance(raw, dict) or not only_workload_values(overrides):
        return None
    workload, options = raw.get("workload"), raw.get("options")
    if not isinstance(workload, dict) or not isinstance(options, dict | None):
        return None
    doc: dict[str, Any] = {"workload": _copy_json(workload)}
    if options is not None or any(d.startswith("options.") for d in overrides):
        doc["options"] = {} if options is None else _copy_json(options)
    try:
        for dotted, value in overrides.items():
            apply_override(doc, dotted, value, "<template>", _no_inlining)
        if checked and not within_magnitude(doc):
            return None
        update = {"workload": _WORKLOAD_ADAPTER.validate_python(doc["workload"])}
        if "options" in doc:
            update["options"] = Options.model_validate(doc["options"])
    except (SpecError, _ReferenceError, ValidationError):
        return None
    if checked:  # the template's topology was checked; the workload is checked against it
        for _ in check_workload_against_topology(update["workload"], template.topology):
            return None
    scenario = template.model_copy(update=update)
    scenario.__dict__.pop("content_hash", None)  # the template's, copied with its fields
    return scenario


def _resolve(
    raw: Any,
    file: str | Path | None,
    overrides: dict[str, Any] | None,
    cache: InlineCache | None,
    checked: bool,
) -> tuple[ResolvedScenario, Provenance]:
    if file is None:
        origin = Path.cwd() / "<inline>"
    else:  # Path(a_path) parses its parts again: a sweep resolves thousands of points
        origin = file if isinstance(file, Path) else Path(file)
    folder = origin.parent
    prov = Provenance()
    doc = _raw_scenario(_copy_json(raw), origin, prov, cache)

    def inline(kind: str, ref: str, loc: Loc) -> Any:
        return _inline(kind, ref, folder, loc, prov, cache=cache)

    def override(dotted: str, value: Any) -> None:
        if cache is not None:
            _copy_shared_on_path(doc, dotted, cache)
        prov.overridden.add(apply_override(doc, dotted, _copy_json(value), origin, inline))

    items = list((overrides or {}).items())
    into_profile = [(d, v) for d, v in items if d.startswith("profile.")]
    for dotted, value in [(d, v) for d, v in items if not d.startswith("profile.")]:
        override(dotted, value)
    # A field of the profile is set on the profile the scenario runs with: the topology's
    # default when it names none (resolved after the other overrides, which may swap topology).
    _default_profile(doc, folder, origin, prov, cache)
    for dotted, value in into_profile:
        override(dotted, value)
    _anchor_trace_file(doc, prov)
    _resolve_resource_refs(doc.get("workload"), ("workload",), prov)
    return _finish_scenario(doc, prov, cache, checked), prov


_SCALARS = frozenset({str, int, float, bool, type(None)})
"""The exact types of the JSON values that hold no other value (shared, never copied)."""


def _copy_json(value: Any) -> Any:
    """A deep copy of a JSON document (a few times faster than ``copy.deepcopy``); anything
    that is not JSON inside it is deep-copied as usual."""
    kind = type(value)
    if kind is dict:  # the common case first: no call for a plain value inside
        return {k: v if type(v) in _SCALARS else _copy_json(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _SCALARS else _copy_json(v) for v in value]
    if kind in _SCALARS:
        return value
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) for v in value]
    if value is None or isinstance(value, str | int | float):
        return value
    return copy.deepcopy(value)


def _copy_shared_on_path(doc: dict[str, Any], dotted: str, cache: InlineCache) -> None:
    """Before an override writes along ``dotted``, replace every shared document of ``cache``
    on that path by a private copy (the cache's documents are never mutated)."""
    node: Any = doc
    for part in dotted.split("."):
        if isinstance(node, dict) and part in node:
            key: int | str = part
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            key = int(part)
        else:
            return
        child = node[key]
        if cache.is_shared(child):
            child = _copy_json(child)
            node[key] = child
        node = child


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
    prov.read_files = True  # where the path points depends on the file system
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
    resolve_ref("profile", topo.default_profile, file.parent, file, "$.default_profile")
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
    _inline_model(raw, file.parent, (), prov)
    _resolve_resource_refs(raw, (), prov)
    check_magnitudes(raw, prov)
    try:
        return TypeAdapter(Workload).validate_python(raw)
    except ValidationError as exc:
        raise validation_error(exc, raw, prov) from None


def load_profile(path: str | Path) -> CalibrationProfile:
    """Load and validate a calibration profile file."""
    return load_model(CalibrationProfile, path)
