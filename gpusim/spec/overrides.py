"""Dotted-path overrides (``--set workload.gemm.m=8192``) applied to a raw scenario document."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpusim.errors import SpecError

Loc = tuple[int | str, ...]
Inliner = Callable[[str, str, Loc], Any]


def parse_value(text: str) -> Any:
    """An override value: JSON when it parses (numbers, booleans, lists, objects), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignment(text: str) -> tuple[str, Any]:
    """Split ``dotted.path=value``; a missing ``=`` is a one-line error."""
    path, sep, value = text.partition("=")
    if not sep or not path.strip():
        raise SpecError("--set", "$", f"expected dotted.path=value, got '{text}'")
    return path.strip(), parse_value(value)


def _reference_kind(loc: Loc, doc: dict[str, Any]) -> str | None:
    """What a string at ``loc`` refers to, if it is a reference field."""
    if len(loc) == 1 and loc[0] in ("topology", "workload", "profile"):
        return str(loc[0])
    if loc in (("workload", "model"), ("workload", "target"), ("workload", "draft")):
        return "model"  # a model of the zoo (models/), by name or path
    if len(loc) >= 3 and loc[-1] in ("model", "memory") and loc[-3] == "devices":
        if loc[-1] == "memory":
            return "memory"
        node: Any = doc
        for part in loc[:-1]:
            node = node[part]
        return "gpu" if node.get("kind") == "gpu" else "cpu"
    return None


def apply_override(
    doc: dict[str, Any], dotted: str, value: Any, file: str | Path, inline: Inliner
) -> Loc:
    """Set ``value`` at ``dotted`` in ``doc``, inlining references the path goes through.

    Returns the location that was set. Paths into lists use indices (``links.3.latency_ns``).
    """
    parts = [p for p in dotted.split(".")]
    if any(not p for p in parts):
        raise SpecError(file, dotted, "empty component in override path")
    node: Any = doc
    loc: Loc = ()
    for depth, part in enumerate(parts):
        key: int | str = int(part) if part.isdigit() and isinstance(node, list) else part
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not isinstance(key, int) or not 0 <= key < len(node):
                raise SpecError(file, dotted, f"'{part}' is not an index of a list of {len(node)}")
        elif isinstance(node, dict):
            if not last and key not in node:
                node[key] = {}  # an absent optional object; validation rejects unknown keys
        else:
            raise SpecError(file, dotted, f"unknown path: cannot go into a value at '{part}'")
        loc = (*loc, key)
        if last:
            kind = _reference_kind(loc, doc) if isinstance(value, str) else None
            node[key] = value if kind is None else inline(kind, value, loc)
            return loc
        child = node[key]
        if isinstance(child, str):
            kind = _reference_kind(loc, doc)
            if kind is None:
                raise SpecError(
                    file, dotted, f"unknown path: '{part}' holds a value, not an object"
                )
            child = inline(kind, child, loc)
            node[key] = child
        node = child
    return loc
