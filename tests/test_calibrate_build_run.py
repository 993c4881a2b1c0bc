"""`gpusim calibrate build` and `gpusim calibrate run`: the ptxas report parser (on a checked-in
real log and on what this machine's nvcc prints), a build and run of the fixture project
(tests/fixtures/kernels_ref_min, two programs following kernels_ref's contract), and the run's
handling of programs that report no device, time out, crash or print garbage."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import cuda_device_present
from typer.testing import CliRunner

from gpusim.calibrate.build import check_architectures, find_toolchain
from gpusim.calibrate.document import Status, load_document, parse_document
from gpusim.calibrate.resources import (
    PtxasParseError,
    demangle,
    load_resource_report,
    make_report,
    parse_ptxas,
    save_resource_report,
)
from gpusim.calibrate.run import default_output
from gpusim.cli import app
from gpusim.errors import SpecError, UsageError

runner = CliRunner()
FIXTURES = Path(__file__).resolve().parent / "fixtures"
KREF_MIN = FIXTURES / "kernels_ref_min"
SAMPLE_LOG = FIXTURES / "ptxas_sample" / "nvcc13_ninja_build.log"
NVCC = os.environ.get("CUDACXX") or shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(
    NVCC is None, reason="nvcc not found (CUDA toolkit not installed): nothing to compile with"
)
HAS_DEMANGLER = shutil.which("c++filt") is not None or shutil.which("cu++filt") is not None


def _one_error_line(output: str) -> str:
    lines = [ln for ln in output.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


# -- the ptxas parser -----------------------------------------------------------------------------


def test_parser_reads_the_checked_in_nvcc13_log() -> None:
    records = parse_ptxas(SAMPLE_LOG.read_text())
    # kernels.cu: 8 entry functions, spill.cu: 1; each for sm_80 and sm_90a.
    assert len(records) == 18
    assert {r.arch for r in records} == {"sm_80", "sm_90a"}
    assert {r.target for r in records} == {"sample", "spill"}
    by = {(r.mangled_name, r.arch): r for r in records}

    smem80, smem90 = by["_Z9with_smemPfi", "sm_80"], by["_Z9with_smemPfi", "sm_90a"]
    assert (smem80.registers_per_thread, smem80.static_shared_mem_bytes) == (12, 4096)
    assert (smem80.barriers, smem80.constant_mem_bytes) == (1, {"0": 364})
    assert (smem90.static_shared_mem_bytes, smem90.constant_mem_bytes) == (4096, {})

    dyn = by["_Z8with_dynPf", "sm_90a"]  # dynamic shared memory is not in the report
    assert (dyn.static_shared_mem_bytes, dyn.barriers) == (0, 1)

    tmpl = by["_ZN2ns4tmplILi64EEEvPd", "sm_90a"]
    assert (tmpl.stack_frame_bytes, tmpl.cumulative_stack_bytes) == (512, 512)

    spill = by["_Z8spill_mePKfPf", "sm_90a"]
    assert spill.target == "spill"
    assert spill.registers_per_thread == 32
    assert (spill.spill_store_bytes, spill.spill_load_bytes) == (13832, 44024)

    # A non-inlined device function has properties but is no kernel; its caller keeps its own.
    assert not any("helper" in r.mangled_name for r in records)
    assert by["_Z5callsPf", "sm_80"].stack_frame_bytes == 0
    assert by["plain_c", "sm_90a"].registers_per_thread == 8  # extern "C": no mangling
    assert all(r.other == [] for r in records)


def test_parser_rejects_an_entry_without_its_used_line() -> None:
    lines = SAMPLE_LOG.read_text().splitlines()
    first_used = next(i for i, ln in enumerate(lines) if "Used " in ln)
    with pytest.raises(PtxasParseError, match=r"no 'Used \.\.\. registers' line"):
        parse_ptxas(lines[:first_used] + lines[first_used + 1 :])


def test_parser_reads_the_older_used_line_without_barriers() -> None:
    # Synthetic: the format CUDA 11 printed (no "used N barriers", lmem and textures listed).
    log = (
        "ptxas info    : Compiling entry function '_Z3fooPf' for 'sm_80'\n"
        "ptxas info    : Function properties for _Z3fooPf\n"
        "    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n"
        "ptxas info    : Used 40 registers, 2048 bytes smem, 356 bytes cmem[0], 1 textures\n"
    )
    (rec,) = parse_ptxas(log)
    assert (rec.registers_per_thread, rec.static_shared_mem_bytes, rec.barriers) == (40, 2048, None)
    assert (rec.stack_frame_bytes, rec.spill_store_bytes, rec.spill_load_bytes) == (8, 4, 4)
    assert rec.other == ["1 textures"]


@pytest.mark.skipif(not HAS_DEMANGLER, reason="no c++filt or cu++filt to demangle with")
def test_demangled_names_answer_lookups() -> None:
    records = demangle(parse_ptxas(SAMPLE_LOG.read_text()))
    report = make_report(records, ["80", "90a"])
    tmpl = report.find("tmpl", arch="sm_90a")
    assert tmpl.demangled_name == "void ns::tmpl<64>(double*)"
    assert tmpl.display_name == "ns::tmpl<64>"
    for name in ("ns::tmpl<64>", "ns::tmpl", "_ZN2ns4tmplILi64EEEvPd"):
        assert report.find(name, arch="sm_90a") == tmpl
    assert report.find("with_smem", program="sample", arch="sm_80").registers_per_thread == 12
    with pytest.raises(LookupError, match="ambiguous"):
        report.find("uses_const")  # 10 registers on sm_80, 12 on sm_90a
    with pytest.raises(LookupError, match="no kernel 'nope'"):
        report.find("nope")
    with pytest.raises(LookupError, match="no entry for arch sm_75"):
        report.find("with_smem", arch="sm_75")


def test_report_round_trips_through_its_file(tmp_path: Path) -> None:
    report = make_report(parse_ptxas(SAMPLE_LOG.read_text()), ["80", "90a"], "src", "13.0")
    path = tmp_path / "resource_usage.json"
    save_resource_report(path, report)
    assert json.loads(path.read_text())["schema"] == "gpusim.resource_usage.v1"
    assert load_resource_report(path) == report
    assert [p.name for p in tmp_path.iterdir()] == ["resource_usage.json"]  # no temp left


def test_a_broken_report_is_a_one_line_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    report = make_report(parse_ptxas(SAMPLE_LOG.read_text()), ["80"])
    doc = report.model_dump(mode="json", by_alias=True)
    doc["kernels"][3]["registers_per_thread"] = -1
    path.write_text(json.dumps(doc))
    with pytest.raises(SpecError) as err:
        load_resource_report(path)
    assert str(err.value).startswith(f"{path}: $.kernels[3].registers_per_thread: ")


@needs_nvcc
def test_parser_reads_what_this_nvcc_prints(tmp_path: Path) -> None:
    src = tmp_path / "k.cu"
    src.write_text(
        "__global__ void no_smem(float* x) { x[threadIdx.x] *= 2.f; }\n"
        "__global__ void smem(float* x) {\n"
        "  __shared__ float b[512];\n"
        "  b[threadIdx.x] = x[threadIdx.x]; __syncthreads();\n"
        "  x[threadIdx.x] = b[511 - threadIdx.x];\n"
        "}\n"
    )
    assert NVCC is not None
    done = subprocess.run(
        [
            NVCC,
            "-Xptxas=-v",
            "-gencode=arch=compute_80,code=sm_80",
            "-gencode=arch=compute_90a,code=sm_90a",
            "-c",
            str(src),
            "-o",
            str(tmp_path / "k.o"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    records = {(r.mangled_name, r.arch): r for r in parse_ptxas(done.stdout + done.stderr)}
    assert set(records) == {
        (name, arch) for name in ("_Z7no_smemPf", "_Z4smemPf") for arch in ("sm_80", "sm_90a")
    }
    for arch in ("sm_80", "sm_90a"):
        assert records["_Z4smemPf", arch].static_shared_mem_bytes == 2048
        assert records["_Z4smemPf", arch].barriers == 1
        assert records["_Z7no_smemPf", arch].static_shared_mem_bytes == 0
        assert all(r.registers_per_thread > 0 for r in records.values())


# -- building -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fixture_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The fixture project built by `gpusim calibrate build` (default architectures)."""
    if NVCC is None:
        pytest.skip("nvcc not found (CUDA toolkit not installed): nothing to compile with")
    build_dir = tmp_path_factory.mktemp("kernels_ref_min") / "build"
    result = runner.invoke(
        app, ["calibrate", "build", "--source", str(KREF_MIN), "--build-dir", str(build_dir)]
    )
    assert result.exit_code == 0, result.output
    return build_dir, result.output


def test_build_writes_the_resource_report(fixture_build: tuple[Path, str]) -> None:
    build_dir, output = fixture_build
    assert "Building CUDA object" in output and "ptxas info" in output  # the log streamed
    assert "wrote " in output and "resource_usage.json" in output
    report = load_resource_report(build_dir / "resource_usage.json")
    assert report.architectures == ["80", "90a"]
    assert report.nvcc_version is not None and "release" in report.nvcc_version
    kernels = {(k.target, k.mangled_name, k.arch): k for k in report.kernels}
    expected = {
        ("launch", "_Z11null_kernelv"),
        ("launch", "_Z18static_smem_kernelPf"),
        ("tile_gemm", "_Z11tiled_sgemmILi32EEvPKfS1_Pfi"),
    }
    assert set(kernels) == {(t, n, a) for t, n in expected for a in ("sm_80", "sm_90a")}
    assert all(k.registers_per_thread > 0 for k in report.kernels)
    for arch in ("sm_80", "sm_90a"):
        assert kernels["launch", "_Z18static_smem_kernelPf", arch].static_shared_mem_bytes == 4096
    log = (build_dir / "build.log").read_text()
    assert "-DCMAKE_CUDA_ARCHITECTURES=80;90a" in log and "--clean-first" in log
    assert (build_dir / "launch").is_file() and (build_dir / "tile_gemm").is_file()


def test_fixture_programs_report_no_device(fixture_build: tuple[Path, str], tmp_path: Path) -> None:
    if cuda_device_present():
        pytest.skip("a CUDA device is present: the no-device path cannot be exercised here")
    build_dir, _ = fixture_build
    out = tmp_path / "results"
    result = runner.invoke(
        app, ["calibrate", "run", "--bin-dir", str(build_dir), "-o", str(out), "--quick"]
    )
    assert result.exit_code == 3, result.output
    assert "no CUDA device on this machine: 2 programs reported no_device; nothing measured" in (
        result.output
    )
    summary = json.loads((out / "run.json").read_text())
    assert [p["status"] for p in summary["programs"]] == ["no_device", "no_device"]
    assert summary["not_built"] == ["memory", "flags", "persistent_moe", "spmm"]
    for name in ("launch", "tile_gemm"):
        doc = load_document(out / f"{name}.json")
        assert (doc.program, doc.status) == (name, Status.no_device)


@pytest.mark.gpu
def test_fixture_programs_measure_on_a_gpu(fixture_build: tuple[Path, str], tmp_path: Path) -> None:
    build_dir, _ = fixture_build
    out = tmp_path / "results"
    result = runner.invoke(
        app, ["calibrate", "run", "--bin-dir", str(build_dir), "-o", str(out), "--quick"]
    )
    assert result.exit_code == 0, result.output
    for name in ("launch", "tile_gemm"):
        doc = load_document(out / f"{name}.json")
        assert doc.status is Status.ok and doc.device is not None and doc.measurements
        assert all(m.stats.median > 0 for m in doc.measurements)


@needs_nvcc
def test_build_failure_names_the_log_and_the_error(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(KREF_MIN, source)
    broken = source / "tile_gemm.cu"
    broken.write_text(broken.read_text() + "\n#error fixture deliberately broken\n")
    build_dir = tmp_path / "build"
    result = runner.invoke(
        app,
        [
            "calibrate",
            "build",
            "--source",
            str(source),
            "--build-dir",
            str(build_dir),
            "--arch",
            "90a",
        ],
    )
    assert result.exit_code == 1, result.output
    line = _one_error_line(result.output)
    assert "cmake build failed" in line and str(build_dir / "build.log") in line
    assert "fixture deliberately broken" in line
    assert not (build_dir / "resource_usage.json").exists()


# Builds without a CUDA toolkit: fake cmake/nvcc scripts on PATH check what the command runs
# and how it reports failures.


def _script(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _fake_toolchain(tmp_path: Path, build_output: Path, configure_exit: int = 0) -> Path:
    """cmake that records its arguments and, for --build, prints ``build_output``; an nvcc."""
    bin_dir = tmp_path / "fakebin"
    calls = tmp_path / "cmake_calls.txt"
    _script(
        bin_dir,
        "cmake",
        f'echo "$*" >> "{calls}"\n'
        'case "$1" in\n'
        f'  --build) /bin/cat "{build_output}"; exit 0 ;;\n'
        f'  *) echo "CMake Error at CMakeLists.txt:3 (message):"; echo "  no CUDA here";'
        f" exit {configure_exit} ;;\n"
        "esac\n",
    )
    _script(bin_dir, "nvcc", 'echo "Cuda compilation tools, release 99.9, V99.9.9"\n')
    return bin_dir


def _use_toolchain(monkeypatch: pytest.MonkeyPatch, fake_bin: Path) -> None:
    """Put the fake cmake/nvcc first on PATH (system tools after it) and forget CUDACXX."""
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.delenv("CUDACXX", raising=False)


def _project(tmp_path: Path) -> Path:
    src = tmp_path / "project"
    src.mkdir()
    (src / "CMakeLists.txt").write_text("project(x LANGUAGES CUDA)\n")
    return src


def test_build_passes_architectures_and_clean_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake_toolchain(tmp_path, SAMPLE_LOG)
    _use_toolchain(monkeypatch, fake)
    build_dir = tmp_path / "build"
    args = [
        "calibrate",
        "build",
        "--source",
        str(_project(tmp_path)),
        "--build-dir",
        str(build_dir),
    ]
    result = runner.invoke(app, [*args, "--arch", "sm_90a", "--arch", "80"])
    assert result.exit_code == 0, result.output
    configure, compile_ = (tmp_path / "cmake_calls.txt").read_text().splitlines()
    assert "-DCMAKE_CUDA_ARCHITECTURES=90a;80" in configure
    assert f"-DCMAKE_CUDA_COMPILER={fake / 'nvcc'}" in configure
    assert compile_.startswith(f"--build {build_dir} --clean-first")
    report = load_resource_report(build_dir / "resource_usage.json")
    assert len(report.kernels) == 18 and report.architectures == ["90a", "80"]
    assert report.nvcc_version == "Cuda compilation tools, release 99.9, V99.9.9"
    assert "spills 13832 B stores" in result.output  # spilling kernels are pointed out


def test_build_refuses_a_log_without_ptxas_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "plain.log"
    plain.write_text("[1/2] Building CUDA object CMakeFiles/x.dir/x.cu.o\n[2/2] Linking\n")
    fake = _fake_toolchain(tmp_path, plain)
    _use_toolchain(monkeypatch, fake)
    build_dir = tmp_path / "build"
    args = [
        "calibrate",
        "build",
        "--source",
        str(_project(tmp_path)),
        "--build-dir",
        str(build_dir),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "no ptxas resource lines" in _one_error_line(result.output)
    assert "-Xptxas=-v" in result.output
    assert not (build_dir / "resource_usage.json").exists()


def test_build_refuses_an_architecture_missing_from_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake_toolchain(tmp_path, SAMPLE_LOG)
    _use_toolchain(monkeypatch, fake)
    args = ["calibrate", "build", "--source", str(_project(tmp_path))]
    result = runner.invoke(app, [*args, "--build-dir", str(tmp_path / "b"), "--arch", "100a"])
    assert result.exit_code == 1
    assert "no ptxas report for sm_100a" in _one_error_line(result.output)


def test_configure_failure_names_the_log_and_its_last_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake_toolchain(tmp_path, SAMPLE_LOG, configure_exit=1)
    _use_toolchain(monkeypatch, fake)
    build_dir = tmp_path / "build"
    args = [
        "calibrate",
        "build",
        "--source",
        str(_project(tmp_path)),
        "--build-dir",
        str(build_dir),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    line = _one_error_line(result.output)
    assert line.startswith("error: cmake configure failed (exit 1); see ")
    assert str(build_dir / "build.log") in line and "CMake Error at CMakeLists.txt:3" in line
    assert "CMake Error" in (build_dir / "build.log").read_text()


def test_missing_tools_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    only_cmake = tmp_path / "only_cmake"
    _script(only_cmake, "cmake", "exit 0\n")
    monkeypatch.delenv("CUDACXX", raising=False)
    src = _project(tmp_path)
    cases = [
        (str(empty), "error: cmake not found: install CMake"),
        (str(only_cmake), "error: nvcc not found: install the CUDA toolkit or set CUDACXX"),
    ]
    for path, message in cases:
        monkeypatch.setenv("PATH", path)
        result = runner.invoke(app, ["calibrate", "build", "--source", str(src)])
        assert result.exit_code == 2
        assert _one_error_line(result.output).startswith(message)
    with pytest.raises(UsageError, match="is not an executable: fix or unset CUDACXX"):
        find_toolchain({"PATH": str(only_cmake), "CUDACXX": str(tmp_path / "no" / "nvcc")})


def test_bad_source_and_architectures_are_one_line_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["calibrate", "build", "--source", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "no CMakeLists.txt" in _one_error_line(result.output)
    for bad in ("native", "all", "9.0"):
        with pytest.raises(UsageError, match="expected a compute capability"):
            check_architectures([bad])
    assert check_architectures(["sm_90a", "90a", "80"]) == ["90a", "80"]


# -- running --------------------------------------------------------------------------------------


def _doc(program: str, status: str, message: str = "fake") -> str:
    return json.dumps(
        {
            "schema": "gpusim.kernels_ref.v1",
            "program": program,
            "status": status,
            "message": message,
        }
    )


def _program(bin_dir: Path, name: str, body: str) -> None:
    _script(bin_dir, name, body)


def _no_device(bin_dir: Path, name: str) -> None:
    _program(bin_dir, name, f"echo '{_doc(name, 'no_device', 'no CUDA device: fake')}'\nexit 3\n")


def _run(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, ["calibrate", "run", *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_every_program_without_a_device_exits_3(tmp_path: Path) -> None:
    bins, out = tmp_path / "bin", tmp_path / "out"
    for name in ("launch", "memory", "flags"):
        _no_device(bins, name)
    code, output = _run(["--bin-dir", str(bins), "-o", str(out)])
    assert code == 3, output
    assert "no CUDA device on this machine: 3 programs reported no_device; nothing measured" in (
        output
    )
    assert "not built (skipped): tile_gemm, persistent_moe, spmm" in output
    summary = json.loads((out / "run.json").read_text())
    assert summary["all_no_device"] is True and summary["finished"] is True
    assert summary["host"] and summary["date_utc"].endswith("Z")
    assert [(p["program"], p["status"], p["exit_code"]) for p in summary["programs"]] == [
        ("launch", "no_device", 3),
        ("memory", "no_device", 3),
        ("flags", "no_device", 3),
    ]
    assert all(p["wall_s"] >= 0 for p in summary["programs"])
    assert load_document(out / "memory.json").status is Status.no_device


def test_a_program_that_hangs_times_out_and_the_others_run(tmp_path: Path) -> None:
    bins, out = tmp_path / "bin", tmp_path / "out"
    _program(bins, "launch", "sleep 30\necho never\n")  # a child holding stdout open
    _no_device(bins, "memory")
    out.mkdir()
    (out / "launch.json").write_text("stale, from an earlier run")
    t0 = time.perf_counter()
    code, output = _run(["--bin-dir", str(bins), "-o", str(out), "--timeout-s", "1"])
    assert time.perf_counter() - t0 < 15  # killed with its children, not waited for
    assert code == 1, output
    assert _one_error_line(output) == "error: launch: timeout: no result within 1 s (killed)"
    summary = json.loads((out / "run.json").read_text())
    launch, memory = summary["programs"]
    assert (launch["status"], launch["exit_code"], launch["files"]) == ("timeout", None, [])
    assert memory["status"] == "no_device"
    assert not (out / "launch.json").exists()  # the stale document is gone
    assert load_document(out / "memory.json").program == "memory"


def test_a_program_printing_garbage_is_named_and_the_others_are_kept(tmp_path: Path) -> None:
    bins, out = tmp_path / "bin", tmp_path / "out"
    _no_device(bins, "launch")
    _program(bins, "memory", "echo 'hello, not json'\necho 'some diagnostics' >&2\nexit 0\n")
    _no_device(bins, "flags")
    code, output = _run(["--bin-dir", str(bins), "-o", str(out)])
    assert code == 1, output
    line = _one_error_line(output)
    assert line.startswith("error: memory: invalid_output: memory (stdout): $: malformed JSON")
    assert (out / "memory.stdout.txt").read_text() == "hello, not json\n"
    assert (out / "memory.stderr.txt").read_text() == "some diagnostics\n"
    assert not (out / "memory.json").exists()
    assert load_document(out / "launch.json").status is Status.no_device
    assert load_document(out / "flags.json").status is Status.no_device


def test_crashes_and_contradictions_are_recorded(tmp_path: Path) -> None:
    bins, out = tmp_path / "bin", tmp_path / "out"
    _program(bins, "launch", "kill -SEGV $$\n")
    _program(bins, "memory", f"echo '{_doc('memory', 'no_device')}'\nexit 0\n")
    _program(bins, "flags", f"echo '{_doc('launch', 'no_device')}'\nexit 3\n")
    _program(bins, "tile_gemm", "echo partial\nexit 134\n")
    code, output = _run(["--bin-dir", str(bins), "-o", str(out)])
    assert code == 1, output
    statuses = {
        p["program"]: (p["status"], p["message"])
        for p in json.loads((out / "run.json").read_text())["programs"]
    }
    assert statuses["launch"] == ("crashed", "killed by SIGSEGV")
    assert statuses["memory"] == ("invalid_output", "exit code 0 but document status no_device")
    assert statuses["flags"] == ("invalid_output", "the document names program 'launch'")
    assert statuses["tile_gemm"][0] == "crashed"
    assert statuses["tile_gemm"][1].startswith("exit code 134 and tile_gemm (stdout): $:")
    errors = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert [e.split(":")[1].strip() for e in errors] == ["launch", "memory", "flags", "tile_gemm"]


def test_programs_can_be_chosen_and_get_quick(tmp_path: Path) -> None:
    bins, out = tmp_path / "bin", tmp_path / "out"
    args_seen = tmp_path / "args.txt"
    _program(
        bins, "spmm", f'echo "$*" > "{args_seen}"\necho \'{_doc("spmm", "no_device")}\'\nexit 3\n'
    )
    _no_device(bins, "launch")
    code, output = _run(["--bin-dir", str(bins), "-o", str(out), "--program", "spmm", "--quick"])
    assert code == 3, output
    assert args_seen.read_text().strip() == "--quick"
    assert [p["program"] for p in json.loads((out / "run.json").read_text())["programs"]] == [
        "spmm"
    ]
    code, output = _run(["--bin-dir", str(bins), "-o", str(out), "--program", "nope"])
    assert code == 2
    assert _one_error_line(output) == (
        f"error: {bins / 'nope'}: program 'nope' not found (programs in {bins}: launch, spmm)"
    )


def test_missing_bin_dir_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GPUSIM_KERNELS_REF_BIN", raising=False)
    code, output = _run([])
    assert code == 2
    line = _one_error_line(output)
    assert line.startswith("error: kernels_ref/build: no such folder (kernels_ref programs, from ")
    assert "default" in line and "gpusim calibrate build" in line
    monkeypatch.setenv("GPUSIM_KERNELS_REF_BIN", str(tmp_path / "envbin"))
    code, output = _run([])
    assert code == 2
    assert f"{tmp_path / 'envbin'}: no such folder" in output
    assert "from $GPUSIM_KERNELS_REF_BIN" in output
    code, output = _run(["--bin-dir", str(tmp_path / "flagbin")])
    assert code == 2 and "from --bin-dir" in _one_error_line(output)
    (tmp_path / "emptybin").mkdir()
    code, output = _run(["--bin-dir", str(tmp_path / "emptybin")])
    assert code == 2 and "none of the kernels_ref programs" in _one_error_line(output)


def test_env_var_bin_dir_and_default_output_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bins = tmp_path / "bin"
    _no_device(bins, "launch")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GPUSIM_KERNELS_REF_BIN", str(bins))
    code, output = _run([])
    assert code == 3, output
    folder = default_output()
    assert folder.parent == Path("results/calibration")
    assert folder.name.endswith(datetime.now(UTC).strftime("-%Y-%m-%d"))
    summary = json.loads((tmp_path / folder / "run.json").read_text())
    assert summary["bin_dir_from"] == "$GPUSIM_KERNELS_REF_BIN"
    assert default_output(datetime(2025, 3, 4, tzinfo=UTC), "node-7.cluster") == Path(
        "results/calibration/node-7-2025-03-04"
    )


def test_parse_document_errors_name_the_origin() -> None:
    with pytest.raises(SpecError, match=r"^x \(stdout\): \$: no output"):
        parse_document("  \n", "x (stdout)")
    with pytest.raises(SpecError, match=r"^x: \$.status: "):
        parse_document('{"schema": "gpusim.kernels_ref.v1", "program": "x", "status": "?"}', "x")


def test_run_json_records_progress_while_programs_run(tmp_path: Path) -> None:
    bins, out = tmp_path / "bin", tmp_path / "out"
    seen = tmp_path / "seen.json"
    _no_device(bins, "launch")
    _program(
        bins,
        "memory",
        f'/bin/cat "{out / "run.json"}" > "{seen}"\n'
        f"echo '{_doc('memory', 'no_device')}'\nexit 3\n",
    )
    code, output = _run(["--bin-dir", str(bins), "-o", str(out)])
    assert code == 3, output
    during = json.loads(seen.read_text())  # what run.json said while memory ran
    assert during["finished"] is False
    assert [p["program"] for p in during["programs"]] == ["launch"]
    assert json.loads((out / "run.json").read_text())["finished"] is True


def test_anonymous_namespace_kernels_keep_their_names() -> None:
    from gpusim.spec.resources import KernelResourceRecord

    rec = KernelResourceRecord(
        mangled_name="_ZN12_GLOBAL__N_14tileILi2EEEvPKj",
        demangled_name="void (anonymous namespace)::tile<2>(unsigned int const*, int)",
        arch="sm_90a",
        registers_per_thread=120,
    )
    assert rec.display_name == "(anonymous namespace)::tile<2>"
    assert {"(anonymous namespace)::tile", "tile"} <= rec.names()
