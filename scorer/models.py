"""Input and output documents: the one source of the JSON Schemas in schemas/.

These pydantic models define and document the wire format. The hot path does
not build them per event (see `scorer.events` and `scorer.scoring.output`,
which a test keeps in agreement with these models).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

_INPUT = ConfigDict(extra="ignore", frozen=True)
_OUTPUT = ConfigDict(extra="forbid", frozen=True)
NonEmpty = Field(min_length=1)


class VisitorEvent(BaseModel):
    """A website visit from the visitor-identification service."""

    model_config = _INPUT
    event_id: str = Field(min_length=1, description="Unique id; replays are ignored.")
    type: str = Field(min_length=1, description="page_view, form_submit, demo_request, ...")
    occurred_at: AwareDatetime = Field(description="RFC 3339 with a time zone.")
    company_domain: str | None = Field(None, description="Null = unidentified visitor.")
    visitor_id: str | None = None
    session_id: str | None = None
    page_url: str | None = None
    referrer: str | None = None
    ip: str | None = Field(None, description="Personal data: dropped on ingest, never stored.")


class LeadEvent(BaseModel):
    """A lead created in the CRM or by a form."""

    # The rule of `_email_or_domain`, for the JSON Schema.
    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        json_schema_extra={
            "anyOf": [
                {"required": ["email"], "properties": {"email": {"type": "string"}}},
                {
                    "required": ["company_domain"],
                    "properties": {"company_domain": {"type": "string", "minLength": 1}},
                },
            ]
        },
    )
    event_id: str = Field(min_length=1)
    type: Literal["lead_created"]
    occurred_at: AwareDatetime
    lead_id: str = Field(min_length=1)
    email: str | None = Field(
        None,
        min_length=1,
        description="Used to resolve the account; never emitted. Required unless "
        "company_domain is given (`scorer collect` drops emails at ingest).",
    )
    title: str | None = None
    full_name: str | None = None
    company_domain: str | None = None
    source: str | None = None

    @model_validator(mode="after")
    def _email_or_domain(self) -> LeadEvent:
        if self.email is None and not self.company_domain:
            raise ValueError("email: required unless company_domain is given")
        return self


class FieldSource(BaseModel):
    """Where a company field came from and how far to trust it."""

    model_config = _INPUT
    source: str | None = None
    confidence: float = Field(1.0, ge=0.0, le=1.0)
    updated_at: datetime | None = None


class Funding(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    last_round: str | None = None
    last_round_at: str | None = None
    total_usd: float | None = None


class CompanyRecord(BaseModel):
    """A firmographic record, keyed by normalised domain. Any extra field is kept."""

    model_config = ConfigDict(extra="allow", frozen=True)
    domain: str = Field(min_length=1)
    name: str | None = None
    industry: str | None = None
    employees: int | None = None
    annual_revenue_usd: float | None = None
    country: str | None = None
    tech_stack: list[str] | None = None
    business_model: str | None = None
    funding: Funding | None = None
    sources: dict[str, FieldSource] = Field(
        default_factory=dict, description="Field name (dotted when nested) to its source."
    )


class Account(BaseModel):
    model_config = _OUTPUT
    domain: str
    name: str | None


class IcpRef(BaseModel):
    model_config = _OUTPUT
    id: str
    version: int


class Score(BaseModel):
    model_config = _OUTPUT
    total: float = Field(ge=0, le=100)
    fit: float = Field(ge=0, le=100)
    intent: float = Field(ge=0, le=100)
    data_quality: float = Field(ge=0, le=1)


class Reason(BaseModel):
    """One fit criterion and what it contributed."""

    model_config = _OUTPUT
    field: str
    operator: str
    matched: bool | None = Field(description="Null when the field is unknown.")
    weight: float
    points: float = Field(description="Fit points this criterion earned (0..100 in all).")
    must_have: bool
    value: Any = None
    source: str | None
    confidence: float | None


class Trigger(BaseModel):
    model_config = _OUTPUT
    event_id: str
    type: str
    occurred_at: str
    points: float = Field(description="Intent points the event earned before decay.")
    path: str | None = Field(
        None, description="The page's URL path (no host or query), for page events."
    )


class Lead(BaseModel):
    model_config = _OUTPUT
    lead_id: str
    title: str | None
    persona: str | None


class _ScoreDocument(BaseModel):
    model_config = _OUTPUT
    alert_id: str
    account: Account
    icp: IcpRef
    score: Score
    tier: str | None
    hot: bool
    disqualified: bool
    excluded: bool
    reasons: list[Reason]
    trigger: Trigger
    shadow: bool = Field(
        False,
        description="True for a shadow ICP: a would-be alert (on account-scores), never alerted.",
    )
    lead: Lead | None = None
    scored_at: str


class HotAccountEvent(_ScoreDocument):
    """Published to hot-accounts (key = account domain) when an alert fires."""

    type: Literal["hot_account"]


class AccountScore(_ScoreDocument):
    """Published to account-scores for every scored event, when enabled."""

    type: Literal["account_score"]


DOCUMENTS: dict[str, type[BaseModel]] = {
    "visitor-event": VisitorEvent,
    "lead-event": LeadEvent,
    "company-record": CompanyRecord,
    "hot-account": HotAccountEvent,
    "account-score": AccountScore,
}
