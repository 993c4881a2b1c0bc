"""Tell what kind of spec file a document is, for `gpusim check`."""

from __future__ import annotations

from typing import Any, get_args

from gpusim.calibrate.document import RUN_SCHEMA_ID, SCHEMA_ID
from gpusim.spec.resources import RESOURCE_REPORT_SCHEMA_ID
from gpusim.spec.workload import Workload

WORKLOAD_KINDS = {m.model_fields["kind"].default for m in get_args(get_args(Workload)[0])}
SCHEMA_KINDS = {
    SCHEMA_ID: "measurements",
    RUN_SCHEMA_ID: "run",
    RESOURCE_REPORT_SCHEMA_ID: "resources",
}
"""Files that name their own schema."""


def detect_kind(raw: Any) -> str | None:
    """'sweep', 'ledger', 'scenario', 'topology', 'workload', 'profile', 'gpu', 'cpu', 'memory',
    'measurements' (a kernels_ref or published document), 'run' (a `gpusim calibrate run`
    summary), 'resources' (a ptxas resource report), or None."""
    if not isinstance(raw, dict):
        return None
    schema = raw.get("schema")
    if isinstance(schema, str) and schema in SCHEMA_KINDS:
        return SCHEMA_KINDS[schema]
    keys = set(raw)
    if "base" in keys or keys & {"axes", "systems", "seeds", "replicas"}:
        return "sweep"  # (one of them may be missing: loading then says which)
    if "cases" in keys:
        return "ledger"
    if keys & {"topology", "workload"}:
        return "scenario"
    if "devices" in keys or "links" in keys:
        return "topology"
    if "link_efficiency" in keys or "tensor_efficiency" in keys:
        return "profile"
    if raw.get("kind") in WORKLOAD_KINDS:
        return "workload"
    if "sm_count" in keys:
        return "gpu"
    if "cores" in keys:
        return "cpu"
    if "capacity_GB" in keys:
        return "memory"
    return None
