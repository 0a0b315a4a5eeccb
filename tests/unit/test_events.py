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
from scorer.events import _checked_decode, _scan_common, _typed_decode, decode_event
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


def _reference(domain: str) -> str:
    result = domain.strip().lower().rstrip(".")
    return result[4:] if result.startswith("www.") else result


@given(
    st.text(alphabet=st.sampled_from(list("aZw.W -_\t\x1f\x85\u0130\xc9kK0é")), max_size=12)
    | st.text(max_size=12)
)
def test_every_spelling_normalises_as_the_rule_says(domain: str) -> None:
    """The scan that lets the usual spelling skip the memo never changes a result: odd
    characters (Unicode case and whitespace, control characters) included."""
    assert normalise_domain(domain) == _reference(domain)
    assert normalise_domain(domain) == _reference(domain)  # memoised the second time


@pytest.mark.parametrize(
    "domain", ["acme.example", "www.acme.example", "wwwx.example", "acme.example.", "Acme.example"]
)
def test_plain_and_other_spellings_normalise_alike(domain: str) -> None:
    assert normalise_domain(domain) == _reference(domain)


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


# The compiled core reads the common document's bytes itself (`_scan_common`) and
# leaves any other to msgspec (`_typed_decode`). Documents are written here byte by
# byte, so the scanner meets what a serialiser never writes: whitespace anywhere,
# escapes, raw control characters, non-ASCII, keys given twice, other values,
# unclosed strings, trailing bytes.
_KEYS = (
    "event_id",
    "type",
    "occurred_at",
    "company_domain",
    "page_url",
    "lead_id",
    "email",
    "title",
    "visitor_id",
    "referrer",
    "ip",
    "extra",
    "",
    "event_iD",
    "typ",
    "page_urls",
    "lead_ID",
    "emails",
    "tItle",
)
_plain_text = st.text(st.characters(min_codepoint=32, max_codepoint=127, exclude_characters='"\\'))
_plain_value = st.one_of(
    _plain_text.map(lambda text: orjson.dumps(text)),
    st.sampled_from(
        [
            *(b'"lead_created"', b'"page_view"', b'"2026-11-20T10:00:00Z"', b'"Acme.example"'),
            *(b'"https://a.example/pricing?x=1"', b'"pat@acme.example"', b'"2026-11-20"', b"null"),
            # Event times the scanner reads from the bytes, and ones it leaves to datetime.
            *(b'"2024-02-29T23:59:59.123456-07:30"', b'"2026-02-29T10:00:00.123Z"'),
            *(b'"2026-11-20T10:00:00.12Z"', b'"2026-11-20 10:00:00Z"', b'"1969-12-31T23:59:59Z"'),
        ]
    ),
)
_other_value = st.one_of(
    st.text(max_size=4).map(lambda text: orjson.dumps(text)),  # non-ASCII, control characters
    st.sampled_from([b'"a\\u0062"', b'"\\"q"', b'"tab\there"', b'"caf\xc3\xa9"', b'"\xff"']),
    st.sampled_from([b"1", b"-2.5e3", b"true", b"false", b"nul", b"nulll", b"[]", b'{"a":"b"}']),
    st.sampled_from([b'"open', b"", b'"a"x']),
)
_space = st.sampled_from([b"", b"", b"", b"", b" ", b"\n", b"\t", b"\r\n "])


# A valid event's members, each value kept or swapped: most documents then get as
# far as the fields' values, where a wrong read would show.
_BASE = (
    ("event_id", b'"e-1"'),
    ("type", b'"page_view"'),
    ("occurred_at", b'"2026-11-20T10:00:00.5+05:30"'),
    ("company_domain", b'"WWW.Acme.Example."'),
    ("page_url", b'"https://a.example/pricing?x=1"'),
)
_LEAD = (("type", b'"lead_created"'), ("lead_id", b'"L-1"'), ("email", b'"pat@acme.example"'))


@st.composite
def _documents(draw: st.DrawFn, plain: bool) -> bytes:
    base = dict(_BASE)
    if draw(st.booleans()):
        base.update(_LEAD)
    swapped = _plain_value if plain else st.one_of(_plain_value, _other_value)
    members = [
        (key, draw(swapped) if draw(st.integers(0, 3)) == 0 else value)
        for key, value in base.items()
        if draw(st.integers(0, 7))
    ]
    members += draw(
        st.lists(st.tuples(st.sampled_from(_KEYS), swapped), max_size=4).filter(
            lambda extra: not plain or not {key for key, _ in extra} & set(base)
        )
    )
    if plain:
        members = list(dict(members).items())  # each key once
    members = draw(st.permutations(members))
    gap = (lambda: draw(_space)) if not plain else (lambda: b"")
    raw = gap() + b"{" + gap()
    for number, (key, value) in enumerate(members):
        if number:
            raw += (b"," if plain or draw(st.integers(0, 19)) else b";") + gap()
        raw += orjson.dumps(key) + gap() + b":" + gap() + value + gap()
    raw += b"}" + gap()
    if not plain and draw(st.integers(0, 19)) == 0:
        raw += draw(st.sampled_from([b"x", b"}", b"{}", b"\x00", b"\x0b"]))
    return raw


def _scanned(raw: bytes) -> tuple[Any, ...]:
    try:
        event = _scan_common(raw)
    except InvalidInputError as exc:
        return ("error", exc.reason, exc.detail)
    if event is None:
        return ("not common",)
    return tuple(getattr(event, name) for name in EVENT_FIELDS)


@settings(max_examples=1500, deadline=None)
@given(_documents(plain=False))
def test_the_byte_scanner_decodes_exactly_as_msgspec_or_leaves_the_document_to_it(
    raw: bytes,
) -> None:
    """Whatever the scanner reads gives the same Event, or the same error, as
    msgspec's route; whatever it cannot read it leaves alone."""
    scanned = _scanned(raw)
    if scanned != ("not common",):
        assert scanned == _outcome(_typed_decode, raw)
        assert _outcome(decode_event, raw) == scanned


@settings(max_examples=500, deadline=None)
@given(_documents(plain=True))
def test_the_byte_scanner_reads_every_common_document(raw: bytes) -> None:
    """An object of plain ASCII strings and nulls, each key once, is the scanner's
    to read (the common event, as producers write it), with msgspec's result."""
    scanned = _scanned(raw)
    assert scanned != ("not common",)
    assert scanned == _outcome(_typed_decode, raw)


def test_the_byte_scanner_reads_the_bench_and_sample_events() -> None:
    """The events every producer here writes take the scanner's route."""
    lead = {**VISIT, "type": "lead_created", "lead_id": "L-1", "email": "pat@acme.example"}
    for doc in (VISIT, lead, {**VISIT, "company_domain": "Acme.example", "ip": None}):
        for raw in (
            orjson.dumps(doc),
            orjson.dumps(doc) + b"\n",
            orjson.dumps(doc, option=orjson.OPT_INDENT_2),
        ):
            assert _scanned(raw) == _outcome(_typed_decode, raw) != ("not common",)


_LEAD_DOC = (
    b'{"event_id":"e-1","type":"lead_created","occurred_at":"2026-11-20T10:00:00Z",'
    b'"company_domain":"acme.example","page_url":"https://a.example/p","lead_id":"L-1",'
    b'"email":"pat@acme.example","title":"VP Sales"}'
)


@pytest.mark.parametrize(
    "key", ["event_id", "type", "company_domain", "page_url", "lead_id", "email", "title"]
)
@pytest.mark.parametrize("change", ["escape", "twice"])
def test_the_byte_scanner_leaves_escapes_and_repeated_fields_to_msgspec(
    key: str, change: str
) -> None:
    """A field the rules read, escaped or given twice (msgspec keeps the last), is
    msgspec's to decode: the scanner declines, and the event is msgspec's."""
    value = orjson.loads(_LEAD_DOC)[key]
    if change == "escape":  # the same text, its first letter escaped
        spelled = b'"\\u%04x' % ord(value[0]) + value[1:].encode() + b'"'
        raw = _LEAD_DOC.replace(orjson.dumps(value), spelled, 1)
        expected = orjson.loads(_LEAD_DOC)
    else:
        raw = _LEAD_DOC[:-1] + b',"%s":"%s2"}' % (key.encode(), value.encode())
        expected = {**orjson.loads(_LEAD_DOC), key: value + "2"}
    assert raw != _LEAD_DOC
    assert _scan_common(raw) is None
    assert _outcome(decode_event, raw) == _outcome(decode_event, orjson.dumps(expected))
