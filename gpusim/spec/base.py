"""Shared base classes and constrained types for every spec model."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Identifier = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.:\-]+$")]


def _file_name_component(name: str) -> str:
    if set(name) == {"."}:
        raise ValueError(f"'{name}' names a folder, not a file: give a name with a letter or digit")
    return name


FileName = Annotated[Identifier, AfterValidator(_file_name_component)]
"""A name that becomes one file-name component (``results/<name>/``): an identifier that is not
``.`` or ``..`` (an identifier holds no path separator)."""


class Spec(BaseModel):
    """Base of every spec: immutable, and unknown fields are errors (typos never pass silently)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Sourced(Spec):
    """A spec whose numbers come from somewhere: ``source`` covers them all, and
    ``field_sources`` names a different source for individual fields."""

    source: str = Field(min_length=1, description="Where these numbers come from.")
    field_sources: dict[str, str] = Field(
        default_factory=dict, description="Per-field source, where it differs from `source`."
    )

    @model_validator(mode="after")
    def _field_sources_name_fields(self) -> Sourced:
        unknown = sorted(set(self.field_sources) - set(type(self).model_fields))
        if unknown:
            raise ValueError(f"field_sources names unknown fields: {', '.join(unknown)}")
        return self


class Dtype(StrEnum):
    """Numeric formats whose peak rates and storage sizes the models know."""

    fp32 = "fp32"
    tf32 = "tf32"
    fp16 = "fp16"
    bf16 = "bf16"
    fp8 = "fp8"


STORAGE_BYTES: dict[Dtype, int] = {
    Dtype.fp32: 4,
    Dtype.tf32: 4,  # TF32 computes on FP32 storage
    Dtype.fp16: 2,
    Dtype.bf16: 2,
    Dtype.fp8: 1,
}


def storage_bytes(dtype: Dtype) -> int:
    """Bytes one element of ``dtype`` occupies in memory."""
    return STORAGE_BYTES[dtype]
