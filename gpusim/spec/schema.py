"""JSON Schemas of the spec files, as users write them (references allowed where the loader
accepts a name or path instead of an inline object)."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, TypeAdapter

from gpusim.spec.hardware import GPUSpec, HostCPUSpec, MemoryTierSpec
from gpusim.spec.model_zoo import TransformerModel
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.resources import KernelResourcesRef
from gpusim.spec.scenario import Scenario
from gpusim.spec.topology import Topology
from gpusim.spec.workload import Workload

_REFERENCE = {
    "type": "string",
    "description": "Name of a shipped component file, or a path to one.",
}


def _allow_component_refs(schema: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(schema)
    defs = out.get("$defs", {})
    for device, fields in (
        ("GPUDevice", ("model",)),
        ("CPUDevice", ("model", "memory")),
        ("StorageDevice", ("memory",)),
    ):
        props = defs.get(device, {}).get("properties", {})
        for name in fields:
            if name in props:
                props[name] = {"anyOf": [props[name], _REFERENCE]}
    return out


def _allow_resource_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Let every ``block_resources`` field also take a reference into a resource report."""
    out = copy.deepcopy(schema)
    defs = out.get("$defs", {})
    fields = [
        props["block_resources"]
        for model in defs.values()
        if "block_resources" in (props := model.get("properties", {}))
    ]
    if fields:
        defs["KernelResourcesRef"] = KernelResourcesRef.model_json_schema(mode="validation")
        for field in fields:
            field["anyOf"] = [*field.get("anyOf", []), {"$ref": "#/$defs/KernelResourcesRef"}]
    return out


_MODEL_REFERENCE = {
    "type": "string",
    "description": "Name of a model of the zoo (models/), or a path to a model file.",
}


def _allow_model_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Let a workload's zoo-model fields (``model``, ``target``, ``draft``) be names or paths."""
    out = copy.deepcopy(schema)
    defs = out.get("$defs", {})
    for spec, key in (
        ("LlmInferenceWorkload", "model"),
        ("SpeculativeDecodingWorkload", "target"),
        ("SpeculativeDecodingWorkload", "draft"),
    ):
        props = defs.get(spec, {}).get("properties", {})
        if key in props:
            props[key] = {"anyOf": [props[key], _MODEL_REFERENCE]}
    return out


def _model_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(mode="validation")


def all_schemas() -> dict[str, dict[str, Any]]:
    """File name (``*.schema.json``) to schema, for every kind of spec file."""
    schemas: dict[str, dict[str, Any]] = {
        "scenario": _allow_model_refs(
            _allow_resource_refs(_allow_component_refs(_model_schema(Scenario)))
        ),
        "topology": _allow_component_refs(_model_schema(Topology)),
        "workload": _allow_model_refs(
            _allow_resource_refs(TypeAdapter(Workload).json_schema(mode="validation"))
        ),
        "profile": _model_schema(CalibrationProfile),
        "gpu": _model_schema(GPUSpec),
        "cpu": _model_schema(HostCPUSpec),
        "memory": _model_schema(MemoryTierSpec),
        "model": _model_schema(TransformerModel),
    }
    for name, schema in schemas.items():
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema.setdefault("title", name)
    return {f"{name}.schema.json": schema for name, schema in schemas.items()}
