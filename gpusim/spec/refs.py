"""Where shipped data lives and how references (names or paths) become files."""

from __future__ import annotations

import os
from pathlib import Path

from gpusim.errors import SpecError

#: Folder names (under the data root) for each kind of reference.
SHIPPED_DIRS: dict[str, str] = {
    "topology": "topologies",
    "scenario": "workloads",
    "profile": "topologies/profiles",
    "gpu": "topologies/components/gpu",
    "cpu": "topologies/components/cpu",
    "memory": "topologies/components/memory",
    "resources": "kernels_ref/resources",
    "model": "models",
}


def data_root() -> Path:
    """The folder holding ``topologies/`` and ``workloads/``: ``$GPUSIM_DATA`` if set, else the
    repository this package was installed from (editable install)."""
    env = os.environ.get("GPUSIM_DATA")
    return Path(env) if env else _REPO_ROOT


_REPO_ROOT = Path(__file__).resolve().parents[2]


def shipped_names(kind: str) -> list[str]:
    """Names of the shipped files of one kind (file stems), sorted."""
    folder = data_root() / SHIPPED_DIRS[kind]
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json"))


def is_path_ref(ref: str) -> bool:
    """A reference is a path when it names a .json file or has a folder in it; else a name."""
    return ref.endswith(".json") or "/" in ref or os.sep in ref


def resolve_ref(kind: str, ref: str, base_dir: Path, referrer: str | Path, at: str) -> Path:
    """The file a reference names. ``referrer``/``at`` locate the reference for error messages.
    Workloads have no shipped names (workloads/ holds runnable scenarios): they are paths."""
    if is_path_ref(ref) or kind not in SHIPPED_DIRS:
        candidate = Path(ref)
        if not candidate.is_absolute():
            candidate = base_dir / candidate
        if not candidate.is_file():
            raise SpecError(referrer, at, f"{kind} file not found: {candidate}")
        return candidate
    candidate = data_root() / SHIPPED_DIRS[kind] / f"{ref}.json"
    if not candidate.is_file():
        known = ", ".join(shipped_names(kind)) or "none"
        raise SpecError(referrer, at, f"unknown {kind} '{ref}' (shipped: {known})")
    return candidate
