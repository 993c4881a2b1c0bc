"""``gpusim calibrate build``: configure and build kernels_ref (or any CMake + CUDA project
following its conventions) and turn the ptxas report in the build log into
``<build-dir>/resource_usage.json``.

The architectures are always passed explicitly (``CMAKE_CUDA_ARCHITECTURES``): kernels_ref
refuses to guess, and a build for the wrong architecture would measure the wrong SASS. The build
runs with ``--clean-first`` so that every object is compiled and every kernel's ptxas lines are
in this build's log (an incremental build would report only the objects it recompiled). The log
is streamed line by line to a callback (the CLI prints it) and kept in ``<build-dir>/build.log``.
Ninja is used when installed (each object's output stays together, so kernels are attributed to
their program); an existing build folder keeps the generator it was configured with.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gpusim.calibrate.resources import (
    PtxasParseError,
    demangle,
    make_report,
    parse_ptxas,
    save_resource_report,
)
from gpusim.errors import UsageError
from gpusim.export.files import write_text_atomic
from gpusim.spec.resources import ResourceReport

DEFAULT_ARCHITECTURES: tuple[str, ...] = ("80", "90a")
"""A100 (sm_80) and H100/GH200 with the Hopper-only instructions (sm_90a)."""
REPORT_NAME = "resource_usage.json"
LOG_NAME = "build.log"
LOG_TAIL_LINES = 3
"""Lines of the log a failure message quotes."""

_ARCH = re.compile(r"^\d{2,3}[a-z]?$")
LineSink = Callable[[str], None]


class BuildError(Exception):
    """Configure or build failed, or the log holds no usable ptxas report; one line, naming the
    log file and its last relevant lines."""


@dataclass(frozen=True)
class Toolchain:
    """The programs a build needs, as found on this machine."""

    cmake: str
    nvcc: str
    ninja: str | None


@dataclass(frozen=True)
class BuildOutcome:
    """What a successful build produced."""

    report: ResourceReport
    report_path: Path
    log_path: Path
    generator: str
    configure_s: float
    build_s: float


def find_toolchain(env: dict[str, str] | None = None) -> Toolchain:
    """cmake and nvcc (``$CUDACXX`` when set, else ``nvcc`` on PATH), and ninja if present.
    Raises :class:`UsageError` with what to install when one is missing."""
    environ = os.environ if env is None else env
    path = environ.get("PATH")
    cmake = shutil.which("cmake", path=path)
    if cmake is None:
        raise UsageError("cmake not found: install CMake >= 3.24 (e.g. pip install cmake)")
    cudacxx = environ.get("CUDACXX")
    if cudacxx:
        nvcc = shutil.which(cudacxx, path=path)
        if nvcc is None:
            raise UsageError(f"CUDACXX={cudacxx} is not an executable: fix or unset CUDACXX")
    else:
        found = shutil.which("nvcc", path=path)
        if found is None:
            raise UsageError("nvcc not found: install the CUDA toolkit or set CUDACXX")
        nvcc = found
    return Toolchain(cmake=cmake, nvcc=nvcc, ninja=shutil.which("ninja", path=path))


def check_architectures(architectures: Sequence[str]) -> list[str]:
    """The architectures as CMake takes them (``80``, ``90a``), each named once; raises
    :class:`UsageError` for an empty list or a value that is not one compute capability
    (``native``/``all`` are refused: the build must say what it targets)."""
    out: list[str] = []
    for arch in architectures:
        value = arch.strip().removeprefix("sm_")
        if not _ARCH.match(value):
            raise UsageError(f"--arch: expected a compute capability like 80 or 90a, got '{arch}'")
        if value not in out:
            out.append(value)
    if not out:
        raise UsageError("--arch: name at least one architecture (e.g. --arch 80 --arch 90a)")
    return out


def nvcc_version(nvcc: str) -> str | None:
    """The release line of ``nvcc --version`` (``Cuda compilation tools, release 13.0, ...``)."""
    try:
        done = subprocess.run(
            [nvcc, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [ln.strip() for ln in done.stdout.splitlines() if "release" in ln]
    return lines[-1] if lines else None


def _cached_generator(build_dir: Path) -> str | None:
    cache = build_dir / "CMakeCache.txt"
    try:
        text = cache.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    m = re.search(r"^CMAKE_GENERATOR:INTERNAL=(.+)$", text, re.MULTILINE)
    return m.group(1).strip() if m else None


def _tail(lines: Sequence[str]) -> str:
    """The lines worth quoting from a failed step: the last ones that mention an error, else
    the last non-empty ones."""
    text = [ln.strip() for ln in lines if ln.strip()]
    errors = [ln for ln in text if "error" in ln.lower()]
    picked = (errors or text)[-LOG_TAIL_LINES:]
    return " | ".join(ln[:200] for ln in picked) or "(no output)"


def _stream(cmd: Sequence[str], log: list[str], on_line: LineSink) -> int:
    """Run ``cmd`` with stderr merged into stdout, passing each line on as it comes."""
    log.append("$ " + " ".join(cmd))
    on_line(log[-1])
    try:
        proc = subprocess.Popen(
            list(cmd),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
        )
    except OSError as exc:
        raise BuildError(f"cannot run {cmd[0]}: {exc.strerror}") from None
    assert proc.stdout is not None
    with proc:
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            log.append(line)
            on_line(line)
    return proc.returncode


def build(
    source: Path,
    build_dir: Path,
    architectures: Sequence[str] = DEFAULT_ARCHITECTURES,
    *,
    on_line: LineSink = lambda _line: None,
    jobs: int | None = None,
    toolchain: Toolchain | None = None,
) -> BuildOutcome:
    """Configure ``source`` into ``build_dir`` for ``architectures``, build it from clean, parse
    every kernel's ptxas report and write ``<build_dir>/resource_usage.json`` (atomically) and
    ``<build_dir>/build.log``. Raises :class:`UsageError` for missing tools or sources and
    :class:`BuildError` when a step fails or the log holds no ptxas report."""
    archs = check_architectures(architectures)
    if not (source / "CMakeLists.txt").is_file():
        raise UsageError(f"{source}: no CMakeLists.txt (not a CMake project)")
    tools = toolchain if toolchain is not None else find_toolchain()
    generator = _cached_generator(build_dir) or ("Ninja" if tools.ninja else "Unix Makefiles")
    log: list[str] = []
    log_path = build_dir / LOG_NAME

    def failed(step: str, code: int) -> BuildError:
        return BuildError(f"{step} failed (exit {code}); see {log_path}; last lines: {_tail(log)}")

    configure = [
        tools.cmake,
        "-S",
        str(source),
        "-B",
        str(build_dir),
        "-G",
        generator,
        f"-DCMAKE_CUDA_ARCHITECTURES={';'.join(archs)}",
        f"-DCMAKE_CUDA_COMPILER={tools.nvcc}",
    ]
    if tools.ninja and generator == "Ninja":
        configure.append(f"-DCMAKE_MAKE_PROGRAM={tools.ninja}")
    compile_ = [tools.cmake, "--build", str(build_dir), "--clean-first"]
    if jobs is not None:
        compile_ += ["--parallel", str(jobs)]
        if generator == "Unix Makefiles" and jobs > 1:
            compile_ += ["--", "--output-sync=target"]  # keep each object's ptxas lines together
    build_dir.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        code = _stream(configure, log, on_line)
        if code != 0:
            raise failed("cmake configure", code)
        t1 = time.perf_counter()
        start = len(log)
        code = _stream(compile_, log, on_line)
        if code != 0:
            raise failed("cmake build", code)
        t2 = time.perf_counter()
    finally:
        write_text_atomic(log_path, "\n".join(log) + "\n")
    try:
        records = parse_ptxas(log[start:])
    except PtxasParseError as exc:
        raise BuildError(f"{log_path}: {exc}") from None
    if not records:
        raise BuildError(
            f"{log_path}: no ptxas resource lines in the build log: compile the CUDA sources "
            "with -Xptxas=-v"
        )
    missing = [a for a in archs if not any(r.arch == f"sm_{a}" for r in records)]
    if missing:
        raise BuildError(
            f"{log_path}: no ptxas report for {', '.join('sm_' + a for a in missing)} in the "
            "build log (is the architecture built as SASS, not only PTX?)"
        )
    report = make_report(demangle(records), archs, str(source), nvcc_version(tools.nvcc))
    report_path = build_dir / REPORT_NAME
    save_resource_report(report_path, report)
    return BuildOutcome(
        report=report,
        report_path=report_path,
        log_path=log_path,
        generator=generator,
        configure_s=t1 - t0,
        build_s=t2 - t1,
    )
