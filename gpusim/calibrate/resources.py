"""ptxas resource reports: the ``-Xptxas=-v`` lines of a CUDA build log, parsed into one
:class:`~gpusim.spec.resources.KernelResourceRecord` per kernel and architecture, and the
``resource_usage.json`` file that holds them.

What ptxas prints (CUDA 13.0; older releases differ as noted), per architecture of each object::

    ptxas info    : 0 bytes gmem
    ptxas info    : Compiling entry function '_Z11null_kernelv' for 'sm_90a'
    ptxas info    : Function properties for _Z11null_kernelv
        0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
    ptxas info    : Used 4 registers, used 0 barriers
    ptxas info    : Compile time = 1.186 ms

The ``Used`` line lists only what is non-zero or applicable: ``N bytes smem`` appears only for
kernels with static shared memory, ``N bytes cmem[0]`` (kernel parameters) is printed for sm_80
but not for sm_90a, ``N bytes cumulative stack size`` only when the kernel uses a stack, and
releases before 12 print no ``used N barriers``. ``Function properties`` also appears for
non-inlined device functions (no ``Compiling entry function`` before it, no ``Used`` line after
it); those belong to no kernel and are skipped. Under Ninja (and serial Make) each object's
ptxas lines follow its ``Building CUDA object CMakeFiles/<target>.dir/...`` line, which names the
program a kernel belongs to.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gpusim.export.files import write_json_atomic
from gpusim.spec.loading import load_resource_report
from gpusim.spec.resources import (
    RESOURCE_REPORT_SCHEMA_ID,
    KernelResourceRecord,
    ResourceReport,
)

__all__ = [
    "KernelResourceRecord",
    "PtxasParseError",
    "ResourceReport",
    "demangle",
    "load_resource_report",
    "make_report",
    "parse_ptxas",
    "save_resource_report",
]

_INFO = re.compile(r"ptxas info\s*:\s*(?P<body>.*)$")
_ENTRY = re.compile(r"^Compiling entry function '(?P<name>[^']+)' for '(?P<arch>sm_\w+)'")
_PROPERTIES = re.compile(r"^Function properties for (?P<name>\S+)")
_FRAME = re.compile(
    r"(?P<stack>\d+) bytes stack frame, (?P<stores>\d+) bytes spill stores, "
    r"(?P<loads>\d+) bytes spill loads"
)
_USED = re.compile(r"^Used (?P<regs>\d+) registers(?P<rest>.*)$")
_TARGET = re.compile(r"Building CUDA object (?:\S*/)?CMakeFiles/(?P<target>[^/\s]+)\.dir/")
_BARRIERS = re.compile(r"^used (\d+) barriers$")
_SMEM = re.compile(r"^(\d+) bytes smem$")
_CMEM = re.compile(r"^(\d+) bytes cmem\[(\d+)\]$")
_CUMULATIVE = re.compile(r"^(\d+) bytes cumulative stack size$")


class PtxasParseError(ValueError):
    """A build log whose ptxas lines do not add up (e.g. a kernel without its ``Used`` line)."""


@dataclass
class _Entry:
    """A kernel whose ``Compiling entry function`` line was read and ``Used`` line not yet."""

    name: str
    arch: str
    target: str | None
    line: int
    frame: tuple[int, int, int] = (0, 0, 0)
    used: dict[str, object] = field(default_factory=dict)


def _used_items(rest: str) -> dict[str, object]:
    """The items after ``Used N registers`` (``, used 1 barriers, 4096 bytes smem, ...``)."""
    out: dict[str, object] = {"constant_mem_bytes": {}, "other": []}
    cmem: dict[str, int] = {}
    other: list[str] = []
    for item in (part.strip() for part in rest.split(",")):
        if not item:
            continue
        if m := _BARRIERS.match(item):
            out["barriers"] = int(m.group(1))
        elif m := _SMEM.match(item):
            out["static_shared_mem_bytes"] = int(m.group(1))
        elif m := _CMEM.match(item):
            cmem[m.group(2)] = int(m.group(1))
        elif m := _CUMULATIVE.match(item):
            out["cumulative_stack_bytes"] = int(m.group(1))
        else:
            other.append(item)
    out["constant_mem_bytes"] = cmem
    out["other"] = other
    return out


def parse_ptxas(log: str | Iterable[str]) -> list[KernelResourceRecord]:
    """Every kernel's resources in a build log (text or lines), in log order, names mangled
    (:func:`demangle` fills the demangled names). Exact duplicates are dropped. Raises
    :class:`PtxasParseError` when an entry function has no ``Used ... registers`` line before
    the next entry or the end of the log."""
    lines = log.splitlines() if isinstance(log, str) else [ln.rstrip("\n") for ln in log]
    records: list[KernelResourceRecord] = []
    target: str | None = None
    entry: _Entry | None = None
    properties_of: str | None = None  # the function the next stack-frame line belongs to

    def unfinished(e: _Entry) -> PtxasParseError:
        return PtxasParseError(
            f"line {e.line}: ptxas reported no 'Used ... registers' line for entry function "
            f"'{e.name}' ({e.arch})"
        )

    for number, line in enumerate(lines, start=1):
        if m := _TARGET.search(line):
            target = m.group("target")
            continue
        if properties_of is not None and (m := _FRAME.search(line)):
            if entry is not None and properties_of == entry.name:
                entry.frame = (int(m["stack"]), int(m["stores"]), int(m["loads"]))
            properties_of = None
            continue
        info = _INFO.search(line)
        if info is None:
            continue
        body = info.group("body").strip()
        if m := _ENTRY.match(body):
            if entry is not None:
                raise unfinished(entry)
            entry = _Entry(m["name"], m["arch"], target, number)
            properties_of = None
        elif m := _PROPERTIES.match(body):
            properties_of = m["name"]
        elif (m := _USED.match(body)) and entry is not None:
            stack, stores, loads = entry.frame
            record = KernelResourceRecord.model_validate(
                {
                    "mangled_name": entry.name,
                    "arch": entry.arch,
                    "target": entry.target,
                    "registers_per_thread": int(m["regs"]),
                    "stack_frame_bytes": stack,
                    "spill_store_bytes": stores,
                    "spill_load_bytes": loads,
                    **_used_items(m["rest"]),
                }
            )
            if record not in records:
                records.append(record)
            entry = None
    if entry is not None:
        raise unfinished(entry)
    return records


def _demangler() -> str | None:
    for tool in ("c++filt", "cu++filt"):
        found = shutil.which(tool)
        if found:
            return found
    nvcc = shutil.which("nvcc")
    if nvcc:
        sibling = Path(nvcc).resolve().parent / "cu++filt"
        if sibling.is_file():
            return str(sibling)
    return None


def demangle(records: Sequence[KernelResourceRecord]) -> list[KernelResourceRecord]:
    """``records`` with ``demangled_name`` filled by ``c++filt`` (or CUDA's ``cu++filt``);
    unchanged when neither is installed or it fails."""
    tool = _demangler()
    names = sorted({r.mangled_name for r in records})
    if tool is None or not names:
        return list(records)
    try:
        done = subprocess.run(
            [tool],
            input="\n".join(names) + "\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return list(records)
    lines = done.stdout.splitlines()
    if len(lines) != len(names):
        return list(records)
    table = dict(zip(names, lines, strict=True))
    return [r.model_copy(update={"demangled_name": table[r.mangled_name]}) for r in records]


def make_report(
    records: Sequence[KernelResourceRecord],
    architectures: Sequence[str],
    source_dir: str | None = None,
    nvcc_version: str | None = None,
    generated: datetime | None = None,
) -> ResourceReport:
    """A resource report of ``records`` (built for ``architectures``), stamped now (UTC)."""
    when = generated if generated is not None else datetime.now(UTC)
    return ResourceReport.model_validate(
        {
            "schema": RESOURCE_REPORT_SCHEMA_ID,
            "generated_utc": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source_dir": source_dir,
            "architectures": list(architectures),
            "nvcc_version": nvcc_version,
            "kernels": [r.model_dump(mode="json") for r in records],
        }
    )


def save_resource_report(path: Path, report: ResourceReport) -> None:
    """Write ``report`` to ``path`` atomically (a reader never sees half a file)."""
    write_json_atomic(path, report.model_dump(mode="json", by_alias=True))
