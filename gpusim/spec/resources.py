"""Kernel block resources: what the occupancy calculation takes, and the ptxas resource report
(``gpusim calibrate build`` writes it from the build log) they can be measured from.

A spec that declares a kernel's block resources (FlashMoE's persistent kernel) may give them
inline as :class:`KernelResources`, or, in a file, as a :class:`KernelResourcesRef` naming a
report and a kernel in it; the loader (``gpusim.spec.loading``) replaces the reference by the
:class:`KernelResources` it names before validation, so a validated spec never reads a file.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field

from gpusim.spec.base import NonNegativeInt, PositiveInt, Spec

RESOURCE_REPORT_SCHEMA_ID: Final = "gpusim.resource_usage.v1"

ARCH_PATTERN: Final = r"^sm_\d+[a-z]?$"
"""A SASS architecture as ptxas names it: ``sm_80``, ``sm_90a``, ``sm_100f``."""

REPLACED_BY_BLOCK_RESOURCES: Final = (
    "threads_per_block",
    "registers_per_thread",
    "shared_mem_per_block_KiB",
)
"""Fields of a strategy that a ``block_resources`` reference replaces (giving both is an error)."""


class KernelResourceRecord(Spec):
    """One kernel compiled for one architecture, as ptxas reported it (``-Xptxas=-v``)."""

    mangled_name: str = Field(min_length=1, description="The entry function's symbol.")
    demangled_name: str | None = Field(
        default=None, description="c++filt's rendering; absent when no demangler was found."
    )
    arch: str = Field(pattern=ARCH_PATTERN)
    target: str | None = Field(
        default=None,
        description="The CMake target (program) whose object was being compiled, when the log "
        "says (Ninja's or Make's 'Building CUDA object CMakeFiles/<target>.dir/...' line).",
    )
    registers_per_thread: NonNegativeInt
    barriers: NonNegativeInt | None = Field(
        default=None, description="Named barriers used; older ptxas does not print it."
    )
    static_shared_mem_bytes: NonNegativeInt = Field(
        default=0,
        description="Static __shared__ memory (dynamic shared memory is declared at "
        "launch and not in the report).",
    )
    stack_frame_bytes: NonNegativeInt = 0
    spill_store_bytes: NonNegativeInt = 0
    spill_load_bytes: NonNegativeInt = 0
    cumulative_stack_bytes: NonNegativeInt | None = Field(
        default=None, description="Stack including callees, when ptxas prints it."
    )
    constant_mem_bytes: dict[str, NonNegativeInt] = Field(
        default_factory=dict, description="Constant bank (as a string, '0') to bytes."
    )
    other: list[str] = Field(
        default_factory=list, description="Items of the 'Used ...' line this parser does not know."
    )

    def names(self) -> set[str]:
        """Every name this kernel answers to in a lookup: the mangled symbol and, when
        demangled, the full signature, the qualified name with template arguments
        (``ns::tile<128>``), the qualified name without them (``ns::tile``) and the bare name
        (``tile``)."""
        out = {self.mangled_name}
        if self.demangled_name:
            out.add(self.demangled_name)
            qualified = _qualified_name(self.demangled_name)
            plain = _strip_template_args(qualified)
            out.update({qualified, plain, plain.rsplit("::", 1)[-1]})
        return out

    @property
    def display_name(self) -> str:
        """The qualified name when demangled (``ns::tile<128>``), else the symbol."""
        if self.demangled_name:
            return _qualified_name(self.demangled_name)
        return self.mangled_name


def _depth_scan(text: str) -> list[int]:
    """Nesting depth of ``<>`` and ``()`` before each character of ``text``."""
    depth, out = 0, []
    for ch in text:
        if ch in ">)":
            depth -= 1
        out.append(depth)
        if ch in "<(":
            depth += 1
    return out


def _qualified_name(signature: str) -> str:
    """``void ns::tile<128>(float*, int)`` -> ``ns::tile<128>``: drop the parameter list and
    (templates only) the return type. ``(anonymous namespace)`` is a name, not a parameter
    list."""
    masked = signature.replace(_ANONYMOUS, _ANONYMOUS_MASK)
    depth = _depth_scan(masked)
    cut = next((i for i, ch in enumerate(masked) if ch == "(" and depth[i] == 0), len(masked))
    head = masked[:cut]
    spaces = [i for i, ch in enumerate(head) if ch == " " and depth[i] == 0]
    name = head[spaces[-1] + 1 :] if spaces else head
    return name.replace(_ANONYMOUS_MASK, _ANONYMOUS)


_ANONYMOUS = "(anonymous namespace)"
_ANONYMOUS_MASK = "{anonymous-namespace}"


def _strip_template_args(name: str) -> str:
    masked = name.replace(_ANONYMOUS, _ANONYMOUS_MASK)
    depth = _depth_scan(masked)
    plain = "".join(ch for i, ch in enumerate(masked) if depth[i] == 0 and ch not in "<>")
    return plain.replace(_ANONYMOUS_MASK, _ANONYMOUS)


class ResourceReport(Spec):
    """Every kernel of a build, per architecture (``<build-dir>/resource_usage.json``)."""

    schema_id: Literal["gpusim.resource_usage.v1"] = Field(alias="schema")
    generated_utc: str = Field(description="When the build ran (ISO 8601, UTC).")
    source_dir: str | None = Field(default=None, description="The CMake project built.")
    architectures: list[str] = Field(description="CMAKE_CUDA_ARCHITECTURES of the build.")
    nvcc_version: str | None = None
    kernels: list[KernelResourceRecord]

    def find(
        self, kernel: str, arch: str | None = None, program: str | None = None
    ) -> KernelResourceRecord:
        """The one record ``kernel`` names (see :meth:`KernelResourceRecord.names`), for
        ``arch`` and ``program`` when given. Raises ``LookupError`` with the reason when none
        or several different records match. Records equal in everything but their target (a
        kernel compiled into several programs from one source) count as one."""
        named = [k for k in self.kernels if kernel in k.names()]
        if not named:
            known = sorted({k.display_name for k in self.kernels})
            raise LookupError(f"no kernel '{kernel}' (kernels: {', '.join(known) or 'none'})")
        matches = [
            k
            for k in named
            if (arch is None or k.arch == arch) and (program is None or k.target == program)
        ]
        if not matches:
            have = sorted({f"{k.arch} in {k.target or '?'}" for k in named})
            want = " and ".join(
                part
                for part in (
                    f"arch {arch}" if arch is not None else "",
                    f"program {program}" if program is not None else "",
                )
                if part
            )
            raise LookupError(f"kernel '{kernel}' has no entry for {want} (has: {', '.join(have)})")
        untargeted = [k.model_copy(update={"target": None}) for k in matches]
        if any(k != untargeted[0] for k in untargeted[1:]):
            options = sorted(f"{k.display_name} ({k.arch}, {k.target or '?'})" for k in matches)
            raise LookupError(
                f"kernel '{kernel}' is ambiguous: {', '.join(options)}; "
                "name the arch, the program or the mangled symbol"
            )
        return matches[0]


class KernelResources(Spec):
    """One thread block's resources, as the occupancy calculation takes them."""

    threads_per_block: PositiveInt
    registers_per_thread: PositiveInt
    shared_mem_per_block_bytes: NonNegativeInt = Field(
        description="Static plus dynamic shared memory of one block, system reservation excluded."
    )
    source: str | None = Field(
        default=None, description="Where the numbers come from (set when read from a report)."
    )


class KernelResourcesRef(Spec):
    """A kernel's entry in a resource report, standing for :class:`KernelResources` in a file.

    ``report`` is the name of a shipped report (``kernels_ref/resources/<name>.json``) or a path
    relative to the file that holds the reference. ``kernel`` is the mangled symbol, the
    demangled signature, the qualified name (``ns::tile<128>``) or the bare name (``tile``).
    Threads per block and dynamic shared memory are launch parameters, not in the report.
    """

    report: str = Field(min_length=1)
    kernel: str = Field(min_length=1)
    arch: str | None = Field(default=None, pattern=ARCH_PATTERN)
    program: str | None = Field(default=None, min_length=1)
    threads_per_block: PositiveInt
    dynamic_shared_mem_bytes: NonNegativeInt = 0

    def resolve(self, record: KernelResourceRecord) -> KernelResources:
        """The block resources of ``record`` launched as this reference says."""
        return KernelResources(
            threads_per_block=self.threads_per_block,
            registers_per_thread=record.registers_per_thread,
            shared_mem_per_block_bytes=record.static_shared_mem_bytes
            + self.dynamic_shared_mem_bytes,
            source=f"{self.report}: {record.mangled_name} ({record.arch})",
        )
