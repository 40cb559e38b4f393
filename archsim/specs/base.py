"""Typed spec base: strict pydantic models whose quantity fields accept unit strings."""
from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, Strict, field_validator

from archsim.units import UnitError, parse_quantity


class Spec(BaseModel):
    """Base of every spec: unknown fields are errors, assignments are validated, numbers are
    finite, and YAML's ``true``/``false`` is a boolean only where a field is one (``layers: true``
    is not 1, ``output_layer: 1`` is not true)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False,
                              allow_inf_nan=False)

    #: Field path -> citation, filled when the spec was read from a preset file.
    _sources: dict = PrivateAttr(default_factory=dict)

    @property
    def sources(self) -> dict[str, str]:
        return self._sources

    @field_validator("*", mode="before")
    @classmethod
    def _booleans_only_for_booleans(cls, value, info):
        annotation = cls.model_fields[info.field_name].annotation
        is_bool_field = annotation is bool or annotation == (bool | None)
        if isinstance(value, bool) and not is_bool_field and annotation is not object:
            raise ValueError(f"expected a {_kind(annotation)}, not {str(value).lower()}")
        if is_bool_field and value is not None and not isinstance(value, bool):
            raise ValueError("expected true or false")
        return value


def _kind(annotation) -> str:
    text = str(annotation)
    if "int" in text:
        return "whole number"
    if "float" in text or "Annotated" in text:
        return "number"
    if "str" in text:
        return "name or text"
    return "value of this field's type"


def _quantity(dimension: str):
    def parse(value: object) -> float:
        try:
            return parse_quantity(value, dimension)
        except UnitError as exc:
            raise ValueError(str(exc)) from None

    return BeforeValidator(parse)


def _quantity_json_schema(dimension: str) -> dict:
    return {"anyOf": [{"type": "number"}, {"type": "string"}], "description_unit": dimension}


# Quantities: positive (strictly) or non-negative SI floats, unit strings accepted.
Seconds = Annotated[float, _quantity("time"), Field(gt=0, json_schema_extra={"unit": "s"})]
SecondsNonNeg = Annotated[float, _quantity("time"), Field(ge=0, json_schema_extra={"unit": "s"})]
Joules = Annotated[float, _quantity("energy"), Field(ge=0, json_schema_extra={"unit": "J"})]
Hertz = Annotated[float, _quantity("frequency"), Field(gt=0, json_schema_extra={"unit": "Hz"})]
Watts = Annotated[float, _quantity("power"), Field(ge=0, json_schema_extra={"unit": "W"})]
SquareMetres = Annotated[float, _quantity("area"), Field(ge=0, json_schema_extra={"unit": "m^2"})]
BitsPerSecond = Annotated[float, _quantity("bandwidth"), Field(gt=0, json_schema_extra={"unit": "bit/s"})]
Bytes = Annotated[float, _quantity("size"), Field(gt=0, le=2.0**60, json_schema_extra={"unit": "B"})]
OpsPerSecond = Annotated[float, _quantity("rate"), Field(gt=0, json_schema_extra={"unit": "op/s"})]
# Whole numbers are strict: 512 is a size, 512.0 and "512" are not (YAML writes whole numbers bare).
PositiveInt = Annotated[int, Strict(), Field(gt=0)]
NonNegInt = Annotated[int, Strict(), Field(ge=0)]
#: A seed: every generator (torch, numpy) takes 64-bit seeds.
Seed = Annotated[int, Strict(), Field(ge=0, le=2**63 - 1)]
#: Converter resolution. 1 bit would be a sign-only converter, which aihwkit's resolution
#: 1/(2^bits - 2) cannot express (division by zero) and the periphery model does not simulate;
#: above 16 bits no converter at these speeds exists and the steps vanish below the output noise.
ConverterBits = Annotated[int, Strict(), Field(ge=2, le=16)]
Fraction = Annotated[float, Field(ge=0, le=1)]
