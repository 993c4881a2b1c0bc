"""gpusim: a calibrated discrete-event performance model of GPU nodes.

The public API: :func:`simulate` a scenario (a file path, a :class:`Scenario` or a
:class:`ResolvedScenario`) and read its :class:`Result`.
"""

from gpusim.errors import SimulationError, SpecError
from gpusim.result import Result
from gpusim.simulate import simulate
from gpusim.spec.loading import load_scenario
from gpusim.spec.scenario import ResolvedScenario, Scenario
from gpusim.version import __version__

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
