"""``gpusim calibrate run``: run the kernels_ref programs, validate what each prints and keep it.

Each program is run on its own with a time limit; its stdout must be one measurement document
(:mod:`gpusim.calibrate.document`) whose status agrees with its exit code (0 ok, 1 error,
3 no_device; 2 is a usage error). Into the output folder go, atomically:

- ``<program>.json``: the document as the program printed it, for every valid document;
- ``<program>.stdout.txt`` when stdout was not a valid document, ``<program>.stderr.txt`` when the
  program wrote to stderr;
- ``run.json``: host, UTC date, arguments and, per program, its status, exit code, wall time and
  message.

A program that times out, crashes or prints garbage is recorded as such and the others still
run. Files a previous run left for the programs of this run are removed first, so the folder
never mixes two runs of one program.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from gpusim.calibrate.document import (
    EXIT_ERROR,
    EXIT_NO_DEVICE,
    EXIT_OK,
    EXIT_USAGE,
    RUN_SCHEMA_ID,
    Status,
    parse_document,
)
from gpusim.errors import SpecError, UsageError
from gpusim.export.files import write_json_atomic, write_text_atomic

PROGRAMS: tuple[str, ...] = ("launch", "memory", "flags", "tile_gemm", "persistent_moe", "spmm")
"""The kernels_ref programs, in the order they run."""
BIN_DIR_ENV = "GPUSIM_KERNELS_REF_BIN"
DEFAULT_BIN_DIR = Path("kernels_ref/build")
DEFAULT_TIMEOUT_S = 600.0

_EXPECTED_STATUS = {EXIT_OK: Status.ok, EXIT_ERROR: Status.error, EXIT_NO_DEVICE: Status.no_device}


class Outcome(StrEnum):
    """What became of one program."""

    ok = "ok"
    no_device = "no_device"
    error = "error"
    """The program ran and reported an error (status error, exit 1)."""
    usage = "usage"
    """Exit code 2: the program refused its arguments."""
    timeout = "timeout"
    crashed = "crashed"
    """Killed by a signal, or an exit code outside the contract."""
    invalid_output = "invalid_output"
    """stdout is not a valid document, or its status contradicts the exit code."""


FAILURES = frozenset(
    {Outcome.error, Outcome.usage, Outcome.timeout, Outcome.crashed, Outcome.invalid_output}
)


@dataclass(frozen=True)
class BinDir:
    """Where the programs are, and which setting named the folder."""

    path: Path
    origin: str
    """``--bin-dir``, ``$GPUSIM_KERNELS_REF_BIN`` or ``default``."""


@dataclass(frozen=True)
class ProgramResult:
    """One program's run."""

    program: str
    outcome: Outcome
    exit_code: int | None
    """None when the program was killed for running past its time limit."""
    wall_s: float
    message: str | None
    files: tuple[str, ...]
    """Files written for it in the output folder (names only)."""

    def summary(self) -> dict[str, Any]:
        """This result as ``run.json`` lists it."""
        return {
            "program": self.program,
            "status": self.outcome.value,
            "exit_code": self.exit_code,
            "wall_s": round(self.wall_s, 6),
            "message": self.message,
            "files": list(self.files),
        }


@dataclass(frozen=True)
class RunSummary:
    """Every program's result and where they were written."""

    output: Path
    bin_dir: BinDir
    results: tuple[ProgramResult, ...]
    missing: tuple[str, ...]
    """Known programs not in the bin folder (not run)."""

    @property
    def all_no_device(self) -> bool:
        """Every program ran and reported that this machine has no CUDA device."""
        return bool(self.results) and all(r.outcome is Outcome.no_device for r in self.results)

    @property
    def failures(self) -> tuple[ProgramResult, ...]:
        """Results that are failures (error, usage, timeout, crash, invalid output)."""
        return tuple(r for r in self.results if r.outcome in FAILURES)

    @property
    def ok(self) -> bool:
        """Every program measured."""
        return bool(self.results) and all(r.outcome is Outcome.ok for r in self.results)


def find_bin_dir(flag: Path | None, env: Mapping[str, str] | None = None) -> BinDir:
    """The programs' folder: ``flag``, else ``$GPUSIM_KERNELS_REF_BIN``, else
    ``kernels_ref/build``. Raises :class:`UsageError` when that folder does not exist."""
    environ = os.environ if env is None else env
    if flag is not None:
        chosen = BinDir(flag, "--bin-dir")
    elif environ.get(BIN_DIR_ENV):
        chosen = BinDir(Path(environ[BIN_DIR_ENV]), f"${BIN_DIR_ENV}")
    else:
        chosen = BinDir(DEFAULT_BIN_DIR, "default")
    if not chosen.path.is_dir():
        raise UsageError(
            f"{chosen.path}: no such folder (kernels_ref programs, from {chosen.origin}); build "
            f"them with `gpusim calibrate build`, or point --bin-dir or ${BIN_DIR_ENV} at them"
        )
    return chosen


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def select_programs(
    bin_dir: BinDir, requested: Sequence[str] | None
) -> tuple[list[tuple[str, Path]], list[str]]:
    """(name, executable) of the programs to run, and the known programs not built. With
    ``requested`` every name must be an executable in the folder; without it, the known
    programs found there run (at least one must be). Raises :class:`UsageError` otherwise."""
    folder = bin_dir.path
    if requested:
        found: list[tuple[str, Path]] = []
        for name in dict.fromkeys(requested):
            exe = folder / name
            if not _executable(exe):
                have = [p for p in PROGRAMS if _executable(folder / p)]
                raise UsageError(
                    f"{exe}: program '{name}' not found (programs in {folder}: "
                    f"{', '.join(have) or 'none'})"
                )
            found.append((name, exe))
        return found, []
    present = [(name, folder / name) for name in PROGRAMS if _executable(folder / name)]
    missing = [name for name in PROGRAMS if not _executable(folder / name)]
    if not present:
        raise UsageError(
            f"{folder}: none of the kernels_ref programs ({', '.join(PROGRAMS)}) is there "
            f"(folder from {bin_dir.origin}); build them with `gpusim calibrate build`"
        )
    return present, missing


def default_output(now: datetime | None = None, host: str | None = None) -> Path:
    """``results/calibration/<host>-<YYYY-MM-DD>/`` (UTC date, short host name)."""
    when = now if now is not None else datetime.now(UTC)
    return Path("results") / "calibration" / f"{_host_slug(host)}-{when:%Y-%m-%d}"


def _host_slug(host: str | None = None) -> str:
    name = (host if host is not None else socket.gethostname()).split(".")[0]
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "host"


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _run_process(exe: Path, args: Sequence[str], timeout_s: float) -> tuple[int | None, str, str]:
    """(exit code or None on timeout, stdout, stderr). The program runs in its own session so
    that a timeout kills it and everything it started."""
    proc = subprocess.Popen(
        [str(exe), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, err = proc.communicate()
        return None, out, err
    except BaseException:
        # Ctrl-C reaches only our process group: end the program's too, then stop.
        _kill_group(proc.pid)
        proc.wait()
        raise


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group may have ended meanwhile
        os.killpg(pid, signal.SIGKILL)


def _classify(
    name: str, code: int | None, stdout: str, timeout_s: float
) -> tuple[Outcome, str | None, bool]:
    """(outcome, message, whether stdout is a valid document)."""
    if code is None:
        return Outcome.timeout, f"no result within {timeout_s:g} s (killed)", False
    if code < 0:
        return Outcome.crashed, f"killed by {_signal_name(code)}", False
    try:
        doc = parse_document(stdout, f"{name} (stdout)")
    except SpecError as exc:
        if code == EXIT_USAGE:
            return Outcome.usage, f"exit code 2 (usage) and {exc}", False
        if code not in _EXPECTED_STATUS:
            return Outcome.crashed, f"exit code {code} and {exc}", False
        return Outcome.invalid_output, str(exc), False
    if doc.program != name:
        return Outcome.invalid_output, f"the document names program '{doc.program}'", True
    if code == EXIT_USAGE:
        return Outcome.usage, doc.message or "exit code 2 (usage)", True
    expected = _EXPECTED_STATUS.get(code)
    if expected is None:
        return Outcome.crashed, f"exit code {code} (document status {doc.status.value})", True
    if doc.status is not expected:
        return (
            Outcome.invalid_output,
            f"exit code {code} but document status {doc.status.value}",
            True,
        )
    return Outcome(doc.status.value), doc.message, True


def run_program(
    name: str, exe: Path, output: Path, *, timeout_s: float, args: Sequence[str] = ()
) -> ProgramResult:
    """Run one program, classify it and write its files into ``output``."""
    for stale in (f"{name}.json", f"{name}.stdout.txt", f"{name}.stderr.txt"):
        (output / stale).unlink(missing_ok=True)
    t0 = time.perf_counter()
    try:
        code, stdout, stderr = _run_process(exe, args, timeout_s)
    except OSError as exc:
        wall = time.perf_counter() - t0
        return ProgramResult(name, Outcome.crashed, None, wall, f"cannot run: {exc}", ())
    wall = time.perf_counter() - t0
    outcome, message, valid = _classify(name, code, stdout, timeout_s)
    files: list[str] = []
    if valid:
        files.append(f"{name}.json")
        write_text_atomic(output / files[-1], stdout if stdout.endswith("\n") else stdout + "\n")
    elif stdout:
        files.append(f"{name}.stdout.txt")
        write_text_atomic(output / files[-1], stdout)
    if stderr:
        files.append(f"{name}.stderr.txt")
        write_text_atomic(output / files[-1], stderr)
    return ProgramResult(name, outcome, code, wall, message, tuple(files))


def run_all(
    bin_dir: BinDir,
    programs: Sequence[tuple[str, Path]],
    output: Path,
    *,
    missing: Sequence[str] = (),
    timeout_s: float = DEFAULT_TIMEOUT_S,
    quick: bool = False,
    on_result: Callable[[ProgramResult], None] = lambda _r: None,
) -> RunSummary:
    """Run ``programs`` one after another into ``output``. ``run.json`` is rewritten after
    every program (``finished`` false until the last), so an interrupted run still says what
    it did."""
    if timeout_s <= 0:
        raise UsageError(f"--timeout-s: must be positive, got {timeout_s:g}")
    output.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    args = ["--quick"] if quick else []
    results: list[ProgramResult] = []

    def write_summary(finished: bool) -> RunSummary:
        summary = RunSummary(output, bin_dir, tuple(results), tuple(missing))
        write_json_atomic(
            output / "run.json",
            {
                "schema": RUN_SCHEMA_ID,
                "host": socket.gethostname(),
                "date_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "bin_dir": str(bin_dir.path),
                "bin_dir_from": bin_dir.origin,
                "args": args,
                "timeout_s": timeout_s,
                "finished": finished,
                "programs": [r.summary() for r in results],
                "not_built": list(missing),
                "all_no_device": summary.all_no_device,
            },
        )
        return summary

    for name, exe in programs:
        result = run_program(name, exe, output, timeout_s=timeout_s, args=args)
        results.append(result)
        on_result(result)
        if len(results) < len(programs):
            write_summary(finished=False)
    return write_summary(finished=True)
