"""routes.yaml: named destinations and the ordered rules that pick them (pure).

A rule matches an alert on its ICP, tier and total, and on fields of the
account's company record (country, industry, an employees range, owner, or
any other field); the first rules whose `match` holds send the alert to their
destinations until one says `stop`; `default` catches alerts no rule took.
Secrets are environment references (``${SLACK_BOT_TOKEN}``), resolved when
the file is loaded and never written back, logged or put in an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from scorer.config import env_secret
from scorer.errors import InvalidFileError
from scorer.icp.loader import validation_problems
from scorer.timefmt import parse_duration

_NAME = r"^[a-z0-9][a-z0-9_-]*$"
_TAG = re.compile(r"^(destinations\.[^.]+)\.(?:webhook|slack|hubspot|salesforce|feed)\b")


class InvalidRoutesError(InvalidFileError):
    """routes.yaml failed validation; `problems` name the offending keys."""


def _seconds(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else parse_duration(value)


class _Destination(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrency: int = Field(4, ge=1, le=256)
    rate_per_second: float | None = Field(None, gt=0)
    timeout: float = Field(10.0, gt=0)
    queue_limit: int = Field(10_000, ge=1)

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> float:
        return _seconds(value)


class WebhookDestination(_Destination):
    """POST the alert JSON, signed, with an Idempotency-Key."""

    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    secret: SecretStr
    ca_file: str | None = None
    concurrency: int = Field(64, ge=1, le=256)

    _check_secret = field_validator("secret", mode="before")(env_secret)


class SlackDestination(_Destination):
    """chat.postMessage with a bot token (threads later alerts), or an incoming webhook."""

    type: Literal["slack"]
    token: SecretStr | None = None
    channel: str | None = None
    webhook_url: SecretStr | None = None
    thread_window: float = Field(24 * 3600.0, gt=0)
    account_link: str | None = None
    api_url: str = "https://slack.com/api/"
    concurrency: int = Field(1, ge=1, le=256)
    rate_per_second: float | None = Field(1.0, gt=0)

    _check_secrets = field_validator("token", "webhook_url", mode="before")(env_secret)

    @field_validator("thread_window", mode="before")
    @classmethod
    def _window(cls, value: Any) -> float:
        return _seconds(value)

    def model_post_init(self, context: Any) -> None:
        if (self.token is None) == (self.webhook_url is None):
            raise ValueError("give either token (with channel) or webhook_url")
        if self.token is not None and not self.channel:
            raise ValueError("channel is required with token")


class HubSpotDestination(_Destination):
    """Upsert the company by domain; a task for its owner."""

    type: Literal["hubspot"]
    access_token: SecretStr
    host: str = "https://api.hubapi.com"
    score_property: str = "icp_score"
    tier_property: str = "icp_tier"
    hot_since_property: str = "icp_hot_since"
    create_task: bool = True
    owner_field: str = "hubspot_owner_id"

    _check_secret = field_validator("access_token", mode="before")(env_secret)


class SalesforceDestination(_Destination):
    """Upsert the Account by an external-id field; upsert a Task keyed by alert id."""

    type: Literal["salesforce"]
    instance_url: str = Field(pattern=r"^https://")
    access_token: SecretStr
    api_version: str = "59.0"
    account_id_field: str = "Domain__c"
    task_id_field: str = "Scorer_Alert_Id__c"
    score_field: str = "ICP_Score__c"
    tier_field: str = "ICP_Tier__c"
    hot_since_field: str = "ICP_Hot_Since__c"
    create_task: bool = True
    owner_field: str = "salesforce_owner_id"
    ca_file: str | None = None

    _check_secret = field_validator("access_token", mode="before")(env_secret)


class FeedDestination(_Destination):
    """The live page at /feed."""

    type: Literal["feed"]
    keep: int = Field(200, ge=1, le=10_000)


Destination = Annotated[
    WebhookDestination
    | SlackDestination
    | HubSpotDestination
    | SalesforceDestination
    | FeedDestination,
    Field(discriminator="type"),
]


class Match(BaseModel):
    """Every given condition must hold; a company field the record lacks never matches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    icp: list[str] | None = Field(None, min_length=1)
    tier: list[str] | None = Field(None, min_length=1)
    min_total: float | None = None
    country: list[str] | None = Field(None, min_length=1)
    industry: list[str] | None = Field(None, min_length=1)
    owner: list[str] | None = Field(None, min_length=1)
    employees: tuple[float, float] | None = None
    fields: dict[str, Annotated[list[Any], Field(min_length=1)]] | None = None

    @field_validator("employees")
    @classmethod
    def _range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and value[0] > value[1]:
            raise ValueError("the low end is above the high end")
        return value

    @field_validator("fields")
    @classmethod
    def _no_booleans(cls, value: dict[str, list[Any]] | None) -> dict[str, list[Any]] | None:
        # YAML reads unquoted NO, yes, on, off as booleans: quote them ("NO" is Norway).
        for path, allowed in (value or {}).items():
            if any(isinstance(item, bool) for item in allowed):
                raise ValueError(f"{path}: a yes/no value; quote it if you mean text ('NO')")
        return value


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    match: Match = Match()
    to: list[str] = Field(min_length=1)
    stop: bool = False


class RoutesDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    destinations: dict[Annotated[str, Field(pattern=_NAME)], Destination] = Field(min_length=1)
    rules: list[Rule] = []
    default: list[str] = []

    def model_post_init(self, context: Any) -> None:
        named = set(self.destinations)
        for index, rule in enumerate(self.rules):
            for name in rule.to:
                if name not in named:
                    raise ValueError(f"rules[{index}].to: no destination named {name!r}")
        for name in self.default:
            if name not in named:
                raise ValueError(f"default: no destination named {name!r}")


def _text(value: Any) -> str:
    return str(value).casefold()


def _field(company: Mapping[str, Any] | None, path: str) -> Any:
    value: Any = company
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _one_of(value: Any, allowed: list[Any]) -> bool:
    if value is None:
        return False
    wanted = {_text(item) for item in allowed}
    if isinstance(value, list):
        return any(_text(item) in wanted for item in value)
    return _text(value) in wanted


def matches(match: Match, alert: Mapping[str, Any], company: Mapping[str, Any] | None) -> bool:
    """Whether one rule's conditions hold for an alert document and its company record."""
    if match.icp is not None and alert.get("icp", {}).get("id") not in match.icp:
        return False
    if match.tier is not None and alert.get("tier") not in match.tier:
        return False
    if match.min_total is not None:
        total = alert.get("score", {}).get("total")
        if not isinstance(total, int | float) or total < match.min_total:
            return False
    for name in ("country", "industry", "owner"):
        allowed = getattr(match, name)
        if allowed is not None and not _one_of(_field(company, name), allowed):
            return False
    if match.employees is not None:
        employees = _field(company, "employees")
        low, high = match.employees
        if not isinstance(employees, int | float) or not low <= employees <= high:
            return False
    for path, allowed in (match.fields or {}).items():
        if not _one_of(_field(company, path), allowed):
            return False
    return True


def destinations_for(
    routes: RoutesDocument, alert: Mapping[str, Any], company: Mapping[str, Any] | None
) -> list[str]:
    """The destinations an alert goes to, each once, in rule order."""
    chosen: list[str] = []
    matched = False
    for rule in routes.rules:
        if not matches(rule.match, alert, company):
            continue
        matched = True
        chosen.extend(name for name in rule.to if name not in chosen)
        if rule.stop:
            break
    if not matched:
        chosen.extend(name for name in routes.default if name not in chosen)
    return chosen


def parse_routes(data: Any, source: str = "") -> RoutesDocument:
    if not isinstance(data, dict):
        raise InvalidRoutesError(["(document): expected a mapping of keys to values"], source)
    try:
        return RoutesDocument.model_validate(data)
    except ValidationError as exc:
        # pydantic puts the destination's type in the path: drop it.
        problems = [_TAG.sub(r"\1", problem) for problem in validation_problems(exc)]
        raise InvalidRoutesError(problems, source) from None


def load_routes(path: str | Path) -> RoutesDocument:
    """Read and validate a routes file; secrets resolved from the environment."""
    source = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise InvalidRoutesError([f"(document): cannot read: {exc.strerror}"], source) from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise InvalidRoutesError([f"(document): not valid YAML{where}"], source) from None
    return parse_routes(data, source)
