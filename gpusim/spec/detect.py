"""Tell what kind of spec file a document is, for `gpusim check`."""

from __future__ import annotations

from typing import Any, get_args

from gpusim.calibrate.document import RUN_SCHEMA_ID, SCHEMA_ID
from gpusim.spec.hardware import GPUSpec, HostCPUSpec, MemoryTierSpec
from gpusim.spec.model_zoo import TransformerModel
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.resources import RESOURCE_REPORT_SCHEMA_ID
from gpusim.spec.workload import Workload

WORKLOAD_KINDS = {m.model_fields["kind"].default for m in get_args(get_args(Workload)[0])}
SCHEMA_KINDS = {
    SCHEMA_ID: "measurements",
    RUN_SCHEMA_ID: "run",
    RESOURCE_REPORT_SCHEMA_ID: "resources",
}
"""Files that name their own schema."""

_FIELDS = {
    "profile": set(CalibrationProfile.model_fields),
    "gpu": set(GPUSpec.model_fields),
    "cpu": set(HostCPUSpec.model_fields),
    "memory": set(MemoryTierSpec.model_fields),
    "model": set(TransformerModel.model_fields),
}
_GENERIC = {"kind", "description", "name", "id", "source", "field_sources"}
OWN_FIELDS = {
    kind: fields - _GENERIC - set().union(*(other for k, other in _FIELDS.items() if k != kind))
    for kind, fields in _FIELDS.items()
}
"""Fields only one of the component and profile kinds has, by kind."""


def detect_kind(raw: Any) -> str | None:
    """'sweep', 'ledger', 'scenario', 'topology', 'workload', 'profile', 'gpu', 'cpu', 'memory',
    'model' (a transformer of the model zoo), 'measurements' (a kernels_ref or published
    document), 'run' (a `gpusim calibrate run` summary), 'resources' (a ptxas resource report),
    or None."""
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
    if raw.get("kind") in WORKLOAD_KINDS:
        return "workload"
    return _by_own_fields(keys)


def _by_own_fields(keys: set[str]) -> str | None:
    """The spec kind whose own fields (those no other of these kinds has) the document uses
    most: a file missing one field, or with a typo, is still told apart."""
    scores = {kind: len(keys & own) for kind, own in OWN_FIELDS.items()}
    best = max(scores, key=lambda kind: scores[kind])
    return best if scores[best] > 0 else None
