"""gpusim: a calibrated discrete-event performance model of GPU nodes.

The public API: :func:`simulate` a scenario (a file path, a :class:`Scenario` or a
:class:`ResolvedScenario`) and read its :class:`Result`.

The names are imported on first use (PEP 562), so ``import gpusim.cli`` (``gpusim --help``)
does not load the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpusim import native
from gpusim.lazy import lazy_exports
from gpusim.simulate import simulate  # light; imported so that no submodule import shadows it

native.install()  # where a compiled engine module's source must run (none is imported above)

if TYPE_CHECKING:
    from gpusim.errors import SimulationError, SpecError
    from gpusim.result import Result
    from gpusim.spec.loading import load_scenario
    from gpusim.spec.scenario import ResolvedScenario, Scenario
    from gpusim.version import __version__

_HOMES = {
    "ResolvedScenario": "gpusim.spec.scenario",
    "Result": "gpusim.result",
    "Scenario": "gpusim.spec.scenario",
    "SimulationError": "gpusim.errors",
    "SpecError": "gpusim.errors",
    "__version__": "gpusim.version",
    "load_scenario": "gpusim.spec.loading",
}
"""Public name -> the module that defines it."""

__all__ = [
    "ResolvedScenario",
    "Result",
    "Scenario",
    "SimulationError",
    "SpecError",
    "__version__",
    "load_scenario",
    "simulate",
]


__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
