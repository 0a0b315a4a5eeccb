"""The ICP document: what a RevOps team writes, validated strictly.

Unknown keys are rejected (a typo such as ``weigth`` must not silently fall
back to a default), and every message names the offending key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from scorer.timefmt import parse_duration

_STRICT = ConfigDict(extra="forbid", frozen=True)
Scalar = str | int | float | bool
OPERATORS = (
    "eq",
    "in",
    "not_in",
    "gte",
    "lte",
    "between",
    "contains_any",
    "contains_all",
    "exists",
    "within_days",
)


class Criterion(BaseModel):
    """One fit criterion: a field, exactly one operator, a weight."""

    model_config = _STRICT
    field: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
    eq: Scalar | None = None
    in_: list[Scalar] | None = Field(None, alias="in", min_length=1)
    not_in: list[Scalar] | None = Field(None, min_length=1)
    gte: float | None = None
    lte: float | None = None
    between: tuple[float, float] | None = None
    contains_any: list[Scalar] | None = Field(None, min_length=1)
    contains_all: list[Scalar] | None = Field(None, min_length=1)
    exists: bool | None = None
    within_days: float | None = Field(None, gt=0)
    weight: float = Field(1.0, gt=0)
    must_have: bool = False

    @field_validator("in_", "not_in", "contains_any", "contains_all")
    @classmethod
    def _no_booleans(cls, values: list[Scalar] | None) -> list[Scalar] | None:
        # YAML reads unquoted NO, yes, on, off as booleans: `in: [US, NO]` would
        # silently never match Norway.
        if values and any(isinstance(v, bool) for v in values):
            raise ValueError("true/false in a list of values; quote it ('NO') if you mean text")
        return values

    @model_validator(mode="after")
    def _one_operator(self) -> Criterion:
        given = [op for op in OPERATORS if self.operand(op) is not None]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(
                f"needs exactly one operator of {', '.join(OPERATORS)} (found {found})"
            )
        if self.between is not None and self.between[0] > self.between[1]:
            raise ValueError("between: expected [low, high] with low <= high")
        return self

    def operand(self, op: str) -> Any:
        return getattr(self, "in_" if op == "in" else op)

    @property
    def operator(self) -> str:
        return next(op for op in OPERATORS if self.operand(op) is not None)


class Signal(BaseModel):
    """Intent points for an event type, optionally only on matching URL paths."""

    model_config = _STRICT
    type: str = Field(min_length=1)
    path: str | None = Field(None, min_length=1, description="Glob on the URL path, e.g. /pricing*")
    points: float = Field(ge=0)


class Intent(BaseModel):
    model_config = _STRICT
    half_life: float = Field(7 * 86400.0, description="Seconds; written as 7d, 12h, 30m, 90s.")
    signals: list[Signal] = Field(default_factory=list)

    @field_validator("half_life", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        seconds = parse_duration(value)
        if seconds <= 0:
            raise ValueError("must be longer than zero")
        return seconds


class Persona(BaseModel):
    """Extra points for lead_created events whose title contains one of the terms."""

    model_config = _STRICT
    name: str = Field(min_length=1)
    title_any: list[str] = Field(min_length=1)
    points: float = Field(ge=0)


class Weights(BaseModel):
    model_config = _STRICT
    fit: float = Field(0.5, ge=0)
    intent: float = Field(0.5, ge=0)

    @model_validator(mode="after")
    def _not_both_zero(self) -> Weights:
        if self.fit + self.intent <= 0:
            raise ValueError("fit and intent weights cannot both be zero")
        return self


class Hot(BaseModel):
    model_config = _STRICT
    min_total: float = Field(65.0, ge=0, le=100)
    min_fit: float = Field(0.0, ge=0, le=100)
    cooldown: float = Field(86400.0, description="Seconds of account clock between alerts.")

    @field_validator("cooldown", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class Exclude(BaseModel):
    model_config = _STRICT
    domains: list[str] = Field(default_factory=list)


def _default_tiers() -> dict[str, float]:
    return {"A": 80.0, "B": 65.0, "C": 50.0}


class ICPDocument(BaseModel):
    """An Ideal Customer Profile, versioned; see docs/icp.md."""

    model_config = _STRICT
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: int = Field(ge=1)
    name: str | None = None
    mode: Literal["active", "shadow"] = Field(
        "active",
        description="shadow: scored like any other but never alerts; its would-be alerts "
        "go to account-scores marked shadow (`scorer icp promote` makes it active)",
    )
    fit: list[Criterion] = Field(min_length=1)
    intent: Intent = Field(default_factory=Intent)
    personas: list[Persona] = Field(default_factory=list)
    weights: Weights = Field(default_factory=Weights)
    tiers: dict[str, Annotated[float, Field(ge=0, le=100)]] = Field(default_factory=_default_tiers)
    hot: Hot = Field(default_factory=Hot)
    exclude: Exclude = Field(default_factory=Exclude)
