"""Reading one JSON document and blaming what is wrong with it on the file and JSON path it came
from: :class:`Provenance` (which file each subtree of an inlined document came from),
:func:`read_json` (no binary, NaN or runaway nesting), :func:`check_magnitudes` and
:func:`validate_as` (the deepest pydantic error, on the right file).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gpusim.errors import SpecError, json_path

Loc = tuple[int | str, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass
class Provenance:
    """Which file each subtree of an inlined document came from."""

    origins: dict[Loc, tuple[str, Loc]] = field(default_factory=dict)
    overridden: set[Loc] = field(default_factory=set)
    read_files: bool = False
    """Whether resolving the document consulted the file system (read a file, or anchored a
    path), beyond the documents an :class:`~gpusim.spec.loading.InlineCache` already held."""

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


MAX_MAGNITUDE = 2**53
"""The largest number a spec may hold: every count, size and rate the model computes with is a
float, which represents integers exactly only up to 2**53 (9e15: a petabyte of bytes)."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_json(path: Path) -> Any:
    """Parse a JSON file; missing, unreadable, binary or malformed files become one-line
    SpecErrors (``NaN`` and ``Infinity``, which Python's parser accepts, are refused)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(path, "$", "file not found") from None
    except IsADirectoryError:
        raise SpecError(path, "$", "is a folder, not a file") from None
    except OSError as exc:
        raise SpecError(path, "$", f"cannot read file: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            path, "$", f"not a JSON text file (byte {exc.start} is not UTF-8)"
        ) from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise SpecError(
            path, "$", f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:
        raise SpecError(path, "$", f"malformed JSON: {exc}") from None
    except RecursionError:
        raise SpecError(path, "$", "malformed JSON: nested too deeply") from None


def check_magnitudes(data: Any, prov: Provenance, loc: Loc = ()) -> None:
    """Refuse any number in raw ``data`` beyond :data:`MAX_MAGNITUDE` (blamed where it is):
    such sizes are physically impossible and overflow or lose precision in the model.
    Validated objects inside ``data`` (already checked) are skipped."""
    if within_magnitude(data):
        return  # the usual case, seen without building a location for every value
    _blame_magnitudes(data, prov, loc)


def within_magnitude(data: Any) -> bool:
    """Whether every number in ``data`` is within :data:`MAX_MAGNITUDE`, looking as
    :func:`_blame_magnitudes` does (False, to let it look, at a subclass of a JSON type)."""
    kind = type(data)
    if kind is dict:
        values: Any = data.values()
    elif kind is list:
        values = data
    else:
        values = (data,)
    for value in values:
        kind = type(value)
        if kind is str or kind is bool or value is None:
            continue
        if kind is int or kind is float:
            if not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
                return False
        elif kind is dict or kind is list:
            if not within_magnitude(value):
                return False
        elif isinstance(value, int | float | dict | list):
            return False  # a subclass: the walk looks (anything else it skips, as here)
    return True


def _blame_magnitudes(data: Any, prov: Provenance, loc: Loc = ()) -> None:
    if isinstance(data, bool):
        return
    if isinstance(data, int | float):
        if abs(data) > MAX_MAGNITUDE:
            raise prov.blame(
                loc, f"{data:.6g} is beyond what the model represents (at most 2**53 = 9.0e15)"
            )
    elif isinstance(data, dict):
        for key, value in data.items():
            _blame_magnitudes(value, prov, (*loc, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            _blame_magnitudes(value, prov, (*loc, i))


def data_loc(data: Any, loc: Loc) -> Loc:
    """Keep the parts of a pydantic location that index the input data: pydantic also names
    union members by type ('Topology', 'str') and tagged-union members by their tag value."""
    out: list[int | str] = []
    node = data
    tag_skipped = False
    for i, part in enumerate(loc):
        if isinstance(node, dict) and not tag_skipped and _is_tag(node, part, loc[i + 1 :]):
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


def _is_tag(node: dict[str, Any], part: int | str, rest: Loc) -> bool:
    """Whether ``part`` is the tag pydantic inserts for a tagged-union member rather than a key
    of ``node``: a tag value that is also a key (kind "transfers" with a ``transfers`` list) is
    the key only when what follows indexes into it."""
    if part not in _tags(node):
        return False
    if not _indexes(node, part):
        return True
    return not rest or not _indexes(node[str(part)], rest[0])


def _indexes(node: Any, part: int | str) -> bool:
    if isinstance(node, dict):
        return isinstance(part, str) and part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _tags(node: dict[str, Any]) -> set[Any]:
    return {node.get(key) for key in ("kind", "op", "name") if isinstance(node.get(key), str)}


def _is_type_name(part: str) -> bool:
    # pydantic's names for union members: class names ('Topology'), 'str', 'function-after[...]'
    return part[:1].isupper() or part in {"str", "int", "float", "none"} or "[" in part


def validation_error(exc: ValidationError, data: Any, prov: Provenance) -> SpecError:
    """The deepest of ``exc``'s errors (a reference-string branch last) blamed on its file."""
    candidates = []
    for err in exc.errors():
        loc = data_loc(data, tuple(err["loc"]))
        is_ref_branch = err["type"] in {"string_type", "none_required"}
        candidates.append((is_ref_branch, -len(loc), loc, err["msg"]))
    candidates.sort(key=lambda c: (c[0], c[1]))
    _, _, loc, msg = candidates[0]
    return prov.blame(loc, msg)


def validate_as(model: type[M], data: Any, prov: Provenance, *, checked: bool = True) -> M:
    """Validate raw data as ``model``; the first (deepest) error becomes a SpecError. Numbers
    beyond :data:`MAX_MAGNITUDE` are refused first (not with ``checked=False``: data known to
    pass, see :func:`~gpusim.spec.loading.resolve_validated`)."""
    if checked:
        check_magnitudes(data, prov)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, data, prov) from None
