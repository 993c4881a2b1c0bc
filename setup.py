"""Build: the package as pyproject.toml declares it, plus the engine's hot modules compiled to C
extensions with mypyc and its hand-written C extensions (gpusim/native.py lists both and explains
how their source still runs where it must). The compiled modules compute the same floats;
without mypyc or a C compiler, or with GPUSIM_PURE_PYTHON set, the install goes on without
them."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def _native() -> Any:
    """gpusim/native.py, loaded on its own (importing gpusim would need its dependencies)."""
    spec = importlib.util.spec_from_file_location("gpusim_native", ROOT / "gpusim" / "native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


native = _native()
SOURCES = {m: native.source_path(m, ROOT) for m in native.COMPILED_MODULES + native.C_MODULES}
HASHES = {m: native.source_sha256(p) for m, p in SOURCES.items()}  # what the build reads below


MYPY_CONFIG = """\
[mypy]
mypy_path = {stubs}
cache_dir = {cache}
ignore_missing_imports = True
follow_imports = skip
[mypy-simpy.*]
follow_imports = normal
"""
"""What mypy sees while mypyc compiles: mypy's defaults (the project's configuration needs the dev
tools: its pydantic plugin), every module outside the list untyped (Any), so that what the build
environment holds (pydantic, numpy or not) changes nothing, except SimPy, seen through the
build's own stubs (build_stubs/simpy: the classes the engine subclasses, everything else Any):
mypyc keeps a base class only where it knows it, and would check SimPy's own annotations at run
time, which are not what its objects hold. A fresh cache each build: mypy's incremental cache
in .mypy_cache failed the build ("value is not in list") once a compiled module's import was
deleted."""


class BuildStamped(build_ext):
    """build_ext that never leaves an old extension behind a failed build (every extension is
    optional) and stamps each compiled module with the SHA-256 of the source it came from."""

    def build_extension(self, ext: Any) -> None:
        Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
        super().build_extension(ext)
        self.built_now.add(ext.name)

    def initialize_options(self) -> None:
        super().initialize_options()
        self.built_now: set[str] = set()

    def run(self) -> None:
        super().run()
        for module, sha in HASHES.items():
            # only what this build made: an extension left by an earlier build is not this source's
            names = [module] if module in native.C_MODULES else [module, module + "__mypyc"]
            built = [Path(self.get_ext_fullpath(n)) for n in names]
            # the folder holding the gpusim package, wherever this build puts it
            root = Path(self.get_ext_fullpath(module)).parents[module.count(".")]
            stamp = native.stamp_path(module, root)
            if all(p.exists() for p in built) and module in self.built_now:
                stamp.write_text(sha + "\n")
            else:
                stamp.unlink(missing_ok=True)


STUBS = ROOT / "build_stubs"
NO_CONTRACTION = [] if sys.platform == "win32" else ["-ffp-contract=off"]
"""No fused multiply-adds (GCC contracts `a - b * c` by default where the target has them, as
aarch64 does): one would round once where Python rounds twice, and the floats would differ."""


def extensions() -> list[Any]:
    if native.pure_requested():
        return []
    c_twins = [
        Extension(
            m, [str(SOURCES[m].relative_to(ROOT))], extra_compile_args=NO_CONTRACTION, optional=True
        )
        for m in native.C_MODULES
    ]
    if not (STUBS / "simpy" / "__init__.pyi").exists():  # SimPy's own types would be checked
        print(f"gpusim: installing without the compiled engine (no {STUBS})", file=sys.stderr)
        return []  # the C twins alone would not run (gpusim/native.py: all or none)
    try:
        from mypyc.build import mypycify

        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "mypyc.ini"
            config.write_text(MYPY_CONFIG.format(stubs=STUBS, cache=Path(tmp) / "cache"))
            modules = mypycify(
                [f"--config-file={config}"]
                + [str(SOURCES[m].relative_to(ROOT)) for m in native.COMPILED_MODULES],
                separate=True,
            )
    except (Exception, SystemExit) as exc:  # mypy errors exit: install the source alone
        print(f"gpusim: installing without the compiled engine ({exc})", file=sys.stderr)
        return []
    for ext in modules:
        ext.optional = True
        ext.extra_compile_args = [*ext.extra_compile_args, *NO_CONTRACTION]
    return [*modules, *c_twins]


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildStamped})
