"""Host time by operation kind, in seconds: what a framework op, a runtime call or a Python step
costs the host thread that issues it (values, sources and ranges: ``docs/host_runtime.md``).

The program format asks :class:`HostCosts` for every host step it interprets::

    costs = HostCosts.from_profile(profile)
    costs.framework_op_s(OpKind.indexing, records_graph=True)  # dispatch + autograd bookkeeping
    costs.runtime_call_s(RuntimeCall.cublas)                  # heuristic + the launch it makes
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from gpusim.execution.launch import LaunchTimes
from gpusim.spec.profile import CalibrationProfile
from gpusim.units import us_to_s

HOST_THREAD_COST_PATHS: tuple[str, ...] = (
    "launch.launch_api_us",
    "launch.framework_op_us",
    "host.reduction_op_us",
    "host.indexing_op_us",
    "host.view_op_us",
    "host.autograd_op_us",
    "host.python_step_us",
    "host.cublas_call_us",
    "host.collective_call_us",
    "host.graph_launch_us",
)
"""The profile paths of the costs the host thread itself spends (what :meth:`HostCosts.slowed`
scales); the doorbell, a graph's per-node issue, the sync return and the queue depth are not."""


class OpKind(StrEnum):
    """Framework (PyTorch eager) operator kinds with distinct dispatch cost."""

    elementwise = "elementwise"
    """Pointwise ops (add, mul, activation, copy, fill): ``launch.framework_op_us``."""
    reduction = "reduction"
    """Reductions, sort, top-k, cumsum."""
    indexing = "indexing"
    """Indexing, gather/scatter, nonzero, masked ops (their host sync is a separate step)."""
    view = "view"
    """View-only ops that launch no kernel (reshape, split, transpose, narrow)."""


class RuntimeCall(StrEnum):
    """Host calls below the framework that put work on a stream."""

    launch_kernel = "cudaLaunchKernel"
    cublas = "cublasGemmEx"
    collective = "c10d collective"
    graph_launch = "cudaGraphLaunch"
    memcpy_async = "cudaMemcpyAsync"


@dataclass(frozen=True)
class HostCosts:
    """Host-side costs of one host + driver + framework combination, in seconds."""

    launch: LaunchTimes
    """The launch path (cudaLaunchKernel, doorbell, graph node cost, sync return)."""
    framework_s: dict[OpKind, float]
    autograd_s: float
    python_step_s: float
    runtime_s: dict[RuntimeCall, float]

    @classmethod
    def from_profile(cls, profile: CalibrationProfile) -> HostCosts:
        """Read the profile's ``launch`` and ``host`` sections once."""
        launch = LaunchTimes.from_profile(profile)
        h = profile.host
        return cls(
            launch=launch,
            framework_s={
                OpKind.elementwise: launch.framework_op_s,
                OpKind.reduction: us_to_s(h.reduction_op_us.value),
                OpKind.indexing: us_to_s(h.indexing_op_us.value),
                OpKind.view: us_to_s(h.view_op_us.value),
            },
            autograd_s=us_to_s(h.autograd_op_us.value),
            python_step_s=us_to_s(h.python_step_us.value),
            runtime_s={
                RuntimeCall.launch_kernel: launch.api_s,
                RuntimeCall.memcpy_async: launch.api_s,
                RuntimeCall.cublas: us_to_s(h.cublas_call_us.value),
                RuntimeCall.collective: us_to_s(h.collective_call_us.value),
                RuntimeCall.graph_launch: launch.graph_launch_s,
            },
        )

    def slowed(self, factor: float) -> HostCosts:
        """These costs with every host-thread cost (framework dispatch, autograd, Python steps,
        runtime calls) multiplied by ``factor``: the thread gets ``1 / factor`` of its CPU while
        another thread of the process competes for it. Device-side costs (the doorbell, a
        graph's per-node issue) and the queue depth are unchanged."""
        launch = replace(
            self.launch,
            api_s=self.launch.api_s * factor,
            framework_op_s=self.launch.framework_op_s * factor,
            graph_launch_s=self.launch.graph_launch_s * factor,
        )
        return HostCosts(
            launch=launch,
            framework_s={k: v * factor for k, v in self.framework_s.items()},
            autograd_s=self.autograd_s * factor,
            python_step_s=self.python_step_s * factor,
            runtime_s={k: v * factor for k, v in self.runtime_s.items()},
        )

    def framework_op_s(self, kind: OpKind, records_graph: bool = False) -> float:
        """Host time the framework spends dispatching one op of ``kind`` (its runtime calls are
        extra); ``records_graph`` adds the autograd bookkeeping of a forward that records one."""
        return self.framework_s[kind] + (self.autograd_s if records_graph else 0.0)

    def runtime_call_s(self, call: RuntimeCall) -> float:
        """Host time of one runtime call (excluding any wait for a full launch queue)."""
        return self.runtime_s[call]

    @property
    def sync_return_s(self) -> float:
        """From the awaited work finishing to the host's synchronising call returning."""
        return self.launch.sync_return_s

    @property
    def queue_depth(self) -> int:
        """Pending launches a stream holds before a launch call blocks."""
        return self.launch.queue_depth
