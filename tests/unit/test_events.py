"""The fast event decoder: validation, account resolution, and agreement with the models."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from scorer.enrichment import domains
from scorer.enrichment.domains import lead_account, normalise_domain
from scorer.errors import InvalidInputError
from scorer.events import _checked_decode, decode_event
from scorer.models import LeadEvent, VisitorEvent

VISIT = {"event_id": "e1", "type": "page_view", "occurred_at": "2026-11-20T10:00:00+02:00"}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe{}", "undecodable"),
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "schema"),
        (orjson.dumps({**VISIT, "event_id": ""}), "schema"),
        (orjson.dumps({k: v for k, v in VISIT.items() if k != "type"}), "schema"),
        (orjson.dumps({**VISIT, "company_domain": 7}), "schema"),
        (orjson.dumps({k: v for k, v in VISIT.items() if k != "occurred_at"}), "timestamp"),
        (orjson.dumps({**VISIT, "occurred_at": "2026-11-20T10:00:00"}), "timestamp"),
        (orjson.dumps({**VISIT, "occurred_at": "2026-11-20"}), "timestamp"),
        (orjson.dumps({**VISIT, "occurred_at": "yesterday"}), "timestamp"),
        (orjson.dumps({**VISIT, "type": "lead_created", "lead_id": "L"}), "schema"),
        (orjson.dumps({**VISIT, "pad": "x" * 70_000}), "oversize"),
    ],
)
def test_bad_input_is_rejected_with_a_reason(raw: bytes, reason: str) -> None:
    """Each class of bad input raises InvalidInputError with its DLQ reason."""
    with pytest.raises(InvalidInputError) as caught:
        decode_event(raw)
    assert caught.value.reason == reason


def test_error_messages_carry_no_payload_text() -> None:
    """A rejected lead's email or other values never appear in the error message."""
    raw = orjson.dumps(
        {**VISIT, "type": "lead_created", "lead_id": 5, "email": "pat@secret.example"}
    )
    with pytest.raises(InvalidInputError) as caught:
        decode_event(raw)
    assert "secret" not in str(caught.value) and "lead_id" in str(caught.value)


def test_domains_are_normalised() -> None:
    """Lower case, no leading www., no trailing dot."""
    assert normalise_domain(" WWW.Acme.Example. ") == "acme.example"
    event = decode_event(orjson.dumps({**VISIT, "company_domain": "www.ACME.example."}))
    assert event.account == "acme.example"


def test_the_domain_memo_keeps_the_domains_in_play_and_never_changes_a_result() -> None:
    """Across generations: a domain used again stays memoised (the same string object
    back), and every result is what normalising afresh gives."""
    generation = domains.MEMO_GENERATION
    hot = normalise_domain("WWW.Hot.Example")
    for number in range(3 * generation):
        assert normalise_domain(f"www.D{number}.example.") == f"d{number}.example"
        if number % 1000 == 0:
            assert normalise_domain("WWW.Hot.Example") is hot


def test_null_domain_is_unresolved_and_ip_is_dropped() -> None:
    """An unidentified visitor has no account; the IP is not kept anywhere on the event."""
    event = decode_event(orjson.dumps({**VISIT, "company_domain": None, "ip": "198.51.100.7"}))
    assert event.account is None
    assert "198.51.100.7" not in repr(event)


@pytest.mark.parametrize(
    ("company_domain", "email", "account"),
    [
        ("Acme.example", "pat@gmail.com", "acme.example"),
        (None, "pat@Sub.Acme.example", "sub.acme.example"),
        (None, "pat@gmail.com", None),
        (None, "pat@OUTLOOK.com.", None),
        ("", "pat@acme.example", "acme.example"),
        (None, "not-an-email", None),
    ],
)
def test_lead_account_resolution(
    company_domain: str | None, email: str, account: str | None
) -> None:
    """company_domain wins, else the email's domain unless it is free mail."""
    assert lead_account(company_domain, email) == account


values = st.one_of(st.none(), st.text(max_size=5), st.integers(-(2**63), 2**63 - 1), st.booleans())
stamps = st.sampled_from(
    ["2026-11-20T10:00:00Z", "2026-11-20T10:00:00.5+05:30", "2026-11-20T10:00:00", "x", ""]
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "event_id": values,
            "type": st.one_of(values, st.just("lead_created")),
            "occurred_at": stamps,
            "company_domain": values,
            "page_url": values,
            "lead_id": values,
            "email": values,
            "title": values,
            "ip": values,
        },
    )
)
def test_decoder_agrees_with_the_models(doc: dict) -> None:
    """The hand-written decoder accepts exactly what the pydantic documents accept."""
    model = LeadEvent if doc.get("type") == "lead_created" else VisitorEvent
    try:
        model.model_validate_json(orjson.dumps(doc))
        model_ok = True
    except ValidationError:
        model_ok = False
    try:
        decode_event(orjson.dumps(doc))
        decoder_ok = True
    except InvalidInputError:
        decoder_ok = False
    assert decoder_ok == model_ok


def _outcome(decode: Any, raw: bytes) -> tuple[Any, ...]:
    try:
        event = decode(raw)
    except InvalidInputError as exc:
        return ("error", exc.reason, exc.detail)
    return tuple(getattr(event, name) for name in EVENT_FIELDS)


EVENT_FIELDS = ("event_id", "type", "occurred_at", "at", "account", "path", "lead_id", "title")
anything = st.one_of(
    values, st.floats(allow_nan=False), st.lists(st.integers(-(2**63), 2**63 - 1), max_size=2)
)


@settings(max_examples=500, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "event_id": values,
            "type": st.one_of(values, st.just("lead_created"), st.just("page_view")),
            "occurred_at": st.one_of(stamps, values),
            "company_domain": st.one_of(values, st.just("WWW.Acme.Example.")),
            "page_url": st.one_of(values, st.just("https://a.example/pricing?x=1")),
            "lead_id": values,
            "email": st.one_of(values, st.just("pat@acme.example"), st.just("pat@gmail.com")),
            "title": values,
            "visitor_id": values,
            "referrer": values,
            "full_name": values,
            "extra": anything,
        },
    )
)
def test_the_fast_path_decodes_exactly_as_the_checked_path(doc: dict[str, Any]) -> None:
    """msgspec's typed decode gives the same Event, or the same error, as orjson plus checks."""
    raw = orjson.dumps(doc)
    assert _outcome(decode_event, raw) == _outcome(_checked_decode, raw)


@pytest.mark.parametrize(
    ("doc", "account"),
    [
        ({"company_domain": "Acme.example"}, "acme.example"),
        ({"company_domain": "acme.example", "email": None}, "acme.example"),
        ({"email": "pat@acme.example"}, "acme.example"),
    ],
)
def test_a_lead_needs_an_email_or_a_company_domain(doc: dict, account: str) -> None:
    """A lead without an email is valid when it names its company (what `scorer collect`
    sends), for the decoder and the model alike."""
    lead = {**VISIT, "type": "lead_created", "lead_id": "L-1", **doc}
    assert decode_event(orjson.dumps(lead)).account == account
    LeadEvent.model_validate(lead)


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"company_domain": ""},
        {"company_domain": None},
        {"company_domain": "a.example", "email": ""},
    ],
)
def test_a_lead_without_email_or_domain_is_rejected(doc: dict) -> None:
    """No email and no company domain (or an empty email) is a schema violation."""
    lead = {**VISIT, "type": "lead_created", "lead_id": "L-1", **doc}
    with pytest.raises(InvalidInputError) as caught:
        decode_event(orjson.dumps(lead))
    assert caught.value.reason == "schema"
    with pytest.raises(ValidationError):
        LeadEvent.model_validate(lead)
