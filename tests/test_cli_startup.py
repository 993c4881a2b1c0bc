"""`gpusim --help` and `gpusim list` start without loading the model: matplotlib, pyarrow, Dask,
numpy, SimPy and pydantic are imported only by the commands that need them (checked by which
modules a fresh interpreter holds, not by timing)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("matplotlib", "pyarrow", "dask", "distributed", "numpy", "simpy", "networkx")


def _modules_after(args: list[str]) -> set[str]:
    code = (
        "import json, sys\n"
        "from gpusim.cli import app\n"
        f"sys.argv = ['gpusim', *{args!r}]\n"
        "try:\n"
        "    app()\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in json.loads(done.stderr)}


@pytest.mark.parametrize("args", [["--help"], ["list"], ["sweep", "--help"]])
def test_startup_loads_no_heavy_library(args: list[str]) -> None:
    loaded = _modules_after(args)
    assert "gpusim" in loaded
    assert sorted(set(HEAVY) & loaded) == []


def test_help_does_not_load_the_specs() -> None:
    assert "pydantic" not in _modules_after(["--help"])


def test_the_model_is_there_when_asked_for() -> None:
    import gpusim

    assert callable(gpusim.simulate) and gpusim.Result.__name__ == "Result"
    from gpusim.spec import Fidelity, Topology

    assert [f.value for f in Fidelity] == ["des", "analytic"] and Topology.__name__ == "Topology"
