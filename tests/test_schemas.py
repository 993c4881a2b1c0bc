"""The JSON Schemas in schemas/ are the ones the code generates (regenerate: `gpusim schema`)."""

from __future__ import annotations

import json
from pathlib import Path

from gpusim.spec.schema import all_schemas

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def test_schemas_are_current() -> None:
    generated = all_schemas()
    on_disk = {p.name for p in SCHEMAS.glob("*.schema.json")}
    assert on_disk == set(generated), "run `gpusim schema` to regenerate schemas/"
    for name, schema in generated.items():
        assert json.loads((SCHEMAS / name).read_text()) == schema, (
            f"{name} is stale: run `gpusim schema`"
        )


def test_scenario_schema_accepts_references() -> None:
    scenario = all_schemas()["scenario.schema.json"]
    topo_prop = scenario["properties"]["topology"]
    assert any(alt.get("type") == "string" for alt in topo_prop["anyOf"])
    gpu_model = scenario["$defs"]["GPUDevice"]["properties"]["model"]
    assert any(alt.get("type") == "string" for alt in gpu_model["anyOf"])
