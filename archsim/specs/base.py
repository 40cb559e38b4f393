"""Typed spec base: strict pydantic models whose quantity fields accept unit strings."""
from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr

from archsim.units import UnitError, parse_quantity


class Spec(BaseModel):
    """Base of every spec: unknown fields are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    #: Field path -> citation, filled when the spec was read from a preset file.
    _sources: dict = PrivateAttr(default_factory=dict)

    @property
    def sources(self) -> dict[str, str]:
        return self._sources


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
OpsPerSecond = Annotated[float, _quantity("rate"), Field(gt=0, json_schema_extra={"unit": "op/s"})]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
