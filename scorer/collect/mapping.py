"""The collector's mapping file: Segment calls to this project's event types (pure).

Every key has a default, so no file at all is a valid mapping: `page` calls
become `page_view`, the Segment B2B SaaS spec's `track` events (and "Demo
Requested", "Form Submitted") become signal types, an `identify` with a work
email becomes a lead for the email's company, a `group` with a domain or
website links the visitor to that company. The `hubspot` section turns on
`POST /hooks/hubspot`. Secrets are environment references (``${VAR}``), as in
routes.yaml, resolved when the file is loaded and never written back or
logged. An invalid file is rejected with every problem naming its key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from scorer.config import env_secret
from scorer.errors import InvalidFileError
from scorer.icp.loader import validation_problems

SignalType = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
TraitPath = Annotated[str, Field(pattern=r"^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$")]

# Segment's B2B SaaS spec events, and the two lead-funnel events most sites
# send, as the signal types an ICP's `intent.signals` name.
DEFAULT_TRACK_EVENTS: dict[str, str] = {
    "Demo Requested": "demo_request",
    "Form Submitted": "form_submit",
    "Signed Up": "signup",
    "Signed In": "signin",
    "Trial Started": "trial_started",
    "Trial Ended": "trial_ended",
    "Account Created": "account_created",
    "Account Added User": "account_added_user",
    "Invite Sent": "invite_sent",
}


class InvalidMappingError(InvalidFileError):
    """The mapping file failed validation; `problems` name the offending keys."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PageMapping(_Section):
    """`page` calls: one visitor event of this type, with the page's URL (no query)."""

    type: SignalType = "page_view"


class TrackMapping(_Section):
    """`track` calls: the event name picks the type; other names are ignored, or
    with `unmapped: snake_case` become their snake_case ("Pricing Viewed" ->
    pricing_viewed)."""

    events: dict[Annotated[str, Field(min_length=1)], SignalType] = Field(
        default_factory=lambda: dict(DEFAULT_TRACK_EVENTS)
    )
    unmapped: Literal["ignore", "snake_case"] = "ignore"


class IdentifyMapping(_Section):
    """`identify` calls: a work email (the first trait found) makes a lead for its
    company and links the visitor's ids to it; the email itself is dropped."""

    lead: bool = True
    link: bool = True
    lead_type: SignalType = "lead_created"
    email_traits: list[TraitPath] = Field(default_factory=lambda: ["email"], min_length=1)
    title_traits: list[TraitPath] = Field(default_factory=lambda: ["title", "job_title"])

    @field_validator("lead_type")
    @classmethod
    def _lead_created(cls, value: str) -> str:
        # The workers read lead documents only for type lead_created (PRODUCT.md).
        if value != "lead_created":
            raise ValueError("the workers take lead events of type lead_created only")
        return value


class GroupMapping(_Section):
    """`group` calls: the first of these traits that holds a domain or a website
    links the call's anonymousId and userId to that company."""

    domain_traits: list[TraitPath] = Field(
        default_factory=lambda: ["domain", "website", "company_domain", "company.domain"],
        min_length=1,
    )


class HubSpotMapping(_Section):
    """`POST /hooks/hubspot`: contact-creation webhooks, verified with the app's
    secret (signature v3); each contact's company domain and job title are read
    with `access_token` (HubSpot's own `hs_email_domain`: the email never comes)."""

    app_secret: SecretStr
    access_token: SecretStr
    api_url: str = Field("https://api.hubapi.com", pattern=r"^https?://")
    webhook_url: str | None = Field(None, pattern=r"^https?://")
    title_property: str = "jobtitle"
    max_age: float = Field(300.0, gt=0, le=3600)
    timeout: float = Field(10.0, gt=0)

    _check_secrets = field_validator("app_secret", "access_token", mode="before")(env_secret)


class Mapping(_Section):
    """The whole mapping file."""

    page: PageMapping = PageMapping()
    track: TrackMapping = TrackMapping()
    identify: IdentifyMapping = IdentifyMapping()
    group: GroupMapping = GroupMapping()
    hubspot: HubSpotMapping | None = None


def parse_mapping(data: Any, source: str = "") -> Mapping:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidMappingError(["(document): expected a mapping of keys to values"], source)
    try:
        return Mapping.model_validate(data)
    except ValidationError as exc:
        raise InvalidMappingError(validation_problems(exc), source) from None


def load_mapping(path: str | Path | None) -> Mapping:
    """Read and validate a mapping file (None: the defaults)."""
    if path is None:
        return Mapping()
    source = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise InvalidMappingError([f"(document): cannot read: {exc.strerror}"], source) from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise InvalidMappingError([f"(document): not valid YAML{where}"], source) from None
    return parse_mapping(data, source)


def snake_case(name: str) -> str | None:
    """ "Pricing Viewed" -> pricing_viewed; None when nothing usable is left."""
    words = re.findall(r"[a-z0-9]+", name.lower())
    text = "_".join(words)[:64]
    return text if text and text[0].isalpha() else None
