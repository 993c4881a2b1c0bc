# What mypyc sees of SimPy while it compiles gpusim's engine (setup.py's MYPY_CONFIG; the
# project's own type check reads SimPy's annotations). Only the class the event loop subclasses is
# named, so that mypyc keeps it as the base class; everything else is Any, so the compiled code
# checks no SimPy type at run time (SimPy's annotations are not what its objects hold: a
# processed event's callbacks are None, typed as a list).
from typing import Any

from simpy.core import Environment as Environment

def __getattr__(name: str) -> Any: ...
