"""The collector's pure parts: the mapping file, Segment calls to records, stitching
state and its bounds, HubSpot's signature, and the settings bound against the dedup window."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from scorer.collect.hubspot import SignatureError, signature_v3, verify
from scorer.collect.identities import Identities
from scorer.collect.mapping import InvalidMappingError, load_mapping, parse_mapping
from scorer.collect.segment import CallError, Lead, Link, Mapper, Visit, identity
from scorer.config import Settings
from scorer.events import event_from_document

T0 = 1_800_000_000.0
MAPPER = Mapper(parse_mapping({}))


def call(kind: str, **fields: object) -> dict[str, object]:
    return {"type": kind, "anonymousId": "anon-1", "messageId": "m-1", **fields}


def test_mapping_defaults_cover_the_b2b_spec() -> None:
    """No file is a valid mapping: page -> page_view, Demo Requested -> demo_request."""
    mapping = load_mapping(None)
    assert mapping.page.type == "page_view"
    assert mapping.track.events["Demo Requested"] == "demo_request"
    assert mapping.track.events["Signed Up"] == "signup"
    assert mapping.hubspot is None


def test_mapping_errors_name_the_key(tmp_path: Path) -> None:
    """Every problem of a bad mapping file names its key."""
    path = tmp_path / "mapping.yaml"
    path.write_text(
        "page: {type: Page View}\ntrack: {unmapped: drop, events: {X: ok}}\n"
        "group: {domain_traits: []}\n"
        "hubspot: {app_secret: s3cr3t-value, access_token: '${NOPE_X}'}\n"
        "extra: 1\n"
    )
    with pytest.raises(InvalidMappingError) as caught:
        load_mapping(path)
    problems = "\n".join(caught.value.problems)
    for key in (
        "page.type",
        "track.unmapped",
        "group.domain_traits",
        "hubspot.app_secret",
        "hubspot.access_token",
        "extra: unknown key",
    ):
        assert key in problems, (key, problems)
    assert "s3cr3t-value" not in problems


def test_a_page_call_becomes_a_page_view_without_personal_data() -> None:
    """page -> page_view with the URL minus its query; IP, email, traits and ids stay out."""
    message = call(
        "page",
        timestamp="2026-11-20T10:00:00.123Z",
        properties={"url": "https://www.site.example/pricing?email=pat@acme.example#x"},
        context={"ip": "203.0.113.9", "traits": {"email": "pat@acme.example"}},
    )
    out = MAPPER.map_calls([message], "web", T0).outputs
    assert len(out) == 1 and isinstance(out[0], Visit)
    assert out[0].identity == identity("a", "anon-1")
    assert out[0].document == {
        "event_id": "m-1",
        "type": "page_view",
        "occurred_at": "2026-11-20T10:00:00.123Z",
        "page_url": "https://www.site.example/pricing",
    }
    text = orjson.dumps(out[0].document).decode()
    assert "203.0.113" not in text and "pat@" not in text and "anon-1" not in text


def test_identify_with_a_work_email_makes_a_lead_without_the_email() -> None:
    """identify(work email) -> lead_created for the email's domain, and links of both ids."""
    message = call(
        "identify",
        userId="u-9",
        timestamp="2026-11-20T10:00:00Z",
        traits={"email": "Pat@WWW.Acme.example", "title": "VP Sales"},
    )
    out = MAPPER.map_calls([message], "web", T0).outputs
    leads = [o for o in out if isinstance(o, Lead)]
    links = [o for o in out if isinstance(o, Link)]
    assert [lead.domain for lead in leads] == ["acme.example"]
    document = leads[0].document
    assert "email" not in document and "Pat" not in orjson.dumps(document).decode()
    assert event_from_document(document).account == "acme.example"
    assert document["title"] == "VP Sales"
    assert {link.identity for link in links} == {identity("a", "anon-1"), identity("u", "u-9")}
    again = MAPPER.map_calls([{**message, "messageId": "m-2"}], "web", T0 + 60).outputs
    assert [o.document["event_id"] for o in again if isinstance(o, Lead)] == [document["event_id"]]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (call("identify", traits={"email": "pat@gmail.com"}), "free_mail"),
        (call("identify", traits={"name": "Pat"}), "no_email"),
        (call("group", groupId="g1", traits={"website": "https://outlook.com"}), "free_mail"),
        (call("group", groupId="g1", traits={"name": "Acme"}), "no_domain"),
        (call("track", event="Button Clicked"), "unmapped_event"),
        (call("screen", name="Home"), "screen"),
    ],
)
def test_calls_that_make_no_event_are_ignored_by_reason(message: dict, reason: str) -> None:
    """Free mail never becomes an account; unmapped and unsupported calls are counted."""
    mapped = MAPPER.map_calls([message], "web", T0)
    assert mapped.outputs == [] and mapped.ignored == {reason: 1}


def test_group_links_both_ids_to_the_website_domain() -> None:
    """group(traits.website) links the anonymousId and the userId to the normalised domain."""
    message = call(
        "group", userId=42, groupId="acct-1", traits={"website": "https://WWW.Acme.example/"}
    )
    out = MAPPER.map_calls([message], "web", T0).outputs
    assert {(o.identity, o.domain) for o in out if isinstance(o, Link)} == {
        (identity("a", "anon-1"), "acme.example"),
        (identity("u", "42"), "acme.example"),
    }


def test_unmapped_tracks_can_be_snake_cased() -> None:
    """With unmapped: snake_case, "Pricing Viewed" becomes pricing_viewed."""
    mapper = Mapper(parse_mapping({"track": {"unmapped": "snake_case"}}))
    out = mapper.map_calls([call("track", event="Pricing Viewed")], "web", T0).outputs
    assert isinstance(out[0], Visit) and out[0].document["type"] == "pricing_viewed"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"type": "page", "messageId": "m"}, "missing_id"),
        (call("track"), "missing_event"),
        (call("fly"), "invalid_type"),
        (call("page", timestamp="yesterday"), "invalid_timestamp"),
        (call("page", properties={"pad": "x" * 33_000}), "too_large"),
        ("not an object", "invalid_call"),
    ],
)
def test_bad_calls_are_refused_with_the_spec_reason(message: object, reason: str) -> None:
    """Each bad call raises CallError with its reason; the message names no value."""
    with pytest.raises(CallError) as caught:
        MAPPER.map_calls([call("page"), message], "web", T0)
    assert caught.value.reason == reason
    assert "xxxx" not in caught.value.message


def visit(event_id: str, at: float) -> dict[str, object]:
    return {"event_id": event_id, "type": "page_view", "occurred_at": str(at)}


def test_kept_visits_are_credited_at_link_with_their_original_times() -> None:
    """Unlinked visits are kept; a link credits them (original ids and times); later
    visits go straight to the account."""
    store = Identities(max_count=10, max_age=3600)
    key = identity("a", "v")
    assert store.visit(key, visit("e1", T0), T0) == []
    assert store.visit(key, visit("e1", T0), T0) == []  # a replay is kept once
    assert store.visit(key, visit("e2", T0 + 5), T0 + 5) == []
    assert store.kept_events == 2
    out = store.link(key, "acme.example", T0 + 60)
    assert [(d, doc["event_id"], doc["occurred_at"]) for d, doc in out] == [
        ("acme.example", "e1", str(T0)),
        ("acme.example", "e2", str(T0 + 5)),
    ]
    assert store.kept_events == 0
    assert store.changed == {key}
    store.changed.clear()
    assert store.visit(key, visit("e3", T0 + 70), T0 + 70)[0][1]["company_domain"] == "acme.example"
    assert +store.counts == {"kept": 2, "stitched": 2, "forwarded": 1}
    assert store.changed == set()  # a linked identity's visit writes no changelog record


def test_kept_visits_are_bounded_by_count_and_age() -> None:
    """The oldest leave past max_count; events max_age behind the newest expire; sweep forgets."""
    store = Identities(max_count=3, max_age=100)
    key = identity("a", "v")
    for i in range(5):
        store.visit(key, visit(f"e{i}", T0 + i), T0 + i)
    assert store.counts["evicted"] == 2 and store.kept_events == 3
    store.visit(key, visit("late", T0 + 200), T0 + 200)
    assert store.counts["expired"] == 3 and store.kept_events == 1
    other = identity("a", "w")
    store.visit(other, visit("w1", T0), T0)
    store.changed.clear()
    assert store.sweep(T0 + 150) == [other] and store.kept_events == 1
    assert store.changed == {other}  # its tombstone
    out = store.link(key, "acme.example", T0 + 500)  # "late" is 300 s old: expired
    assert out == [] and store.counts["expired"] == 5


def test_identity_state_round_trips_through_the_changelog_encoding() -> None:
    """The changelog record keeps the domain, the newest time and the kept events;
    `load` restores them (and a record written by the earlier orjson encoding)."""
    store = Identities(max_count=10, max_age=3600)
    key, linked = identity("a", "v"), identity("a", "w")
    store.visit(key, visit("e1", T0), T0)
    store.link(linked, "acme.example", T0)
    record = store.record(key)
    assert record is not None
    assert orjson.loads(record) == {"d": None, "n": T0, "k": [[T0, visit("e1", T0)]]}
    restored = Identities(max_count=10, max_age=3600)
    restored.load(key, record)
    restored.load(linked, store.record(linked))
    assert restored.kept_events == 1 and len(restored) == 2
    assert restored.visit(linked, visit("e2", T0), T0)[0][0] == "acme.example"
    out = restored.link(key, "acme.example", T0 + 1)
    assert [doc["event_id"] for _, doc in out] == ["e1"]
    old_format = orjson.dumps({"d": None, "n": T0, "k": [[T0, visit("e3", T0)]]})
    restored.load(key, old_format)
    assert restored.kept_events == 1 and key not in restored.linked
    restored.load(key, None)
    assert restored.kept_events == 0 and len(restored) == 1


def hubspot_config() -> object:
    import os

    os.environ["TEST_HS_SECRET"] = "app-secret"
    os.environ["TEST_HS_TOKEN"] = "token"
    mapping = parse_mapping(
        {"hubspot": {"app_secret": "${TEST_HS_SECRET}", "access_token": "${TEST_HS_TOKEN}"}}
    )
    return mapping.hubspot


def test_hubspot_signature_v3_matches_the_documented_recipe() -> None:
    """base64(HMAC-SHA256(secret, method + uri + body + timestamp)), as HubSpot's docs say."""
    body, stamp, uri = b'[{"objectId":1}]', "1700000000000", "https://x.example/hooks/hubspot"
    expected = base64.b64encode(
        hmac.new(
            b"app-secret", b"POST" + uri.encode() + body + stamp.encode(), hashlib.sha256
        ).digest()
    ).decode()
    assert signature_v3(b"app-secret", "POST", uri, body, stamp) == expected


def test_hubspot_verification_refuses_tampered_and_stale_requests() -> None:
    """A valid signature passes; a changed body, a wrong secret or a stale timestamp fail."""
    config = hubspot_config()
    body, uri, now = b'[{"objectId":1}]', "https://x.example/hooks/hubspot", 1_700_000_000.0
    stamp = str(int(now * 1000))
    good = {
        "X-HubSpot-Signature-v3": signature_v3(b"app-secret", "POST", uri, body, stamp),
        "X-HubSpot-Request-Timestamp": stamp,
    }
    verify(config, "POST", uri, body, good, now + 10)  # type: ignore[arg-type]
    for args in (
        ("POST", uri, body + b" ", good, now),
        ("POST", uri, body, {**good, "X-HubSpot-Signature-v3": "AAAA"}, now),
        ("POST", uri, body, good, now + 301),
        ("POST", uri, body, {}, now),
    ):
        with pytest.raises(SignatureError):
            verify(config, *args)  # type: ignore[arg-type]


def test_kept_events_must_be_younger_than_the_dedup_window() -> None:
    """SCORER_COLLECT_KEEP_MAX_AGE at or over SCORER_DEDUP_WINDOW is refused, naming both."""
    assert Settings(collect_keep_max_age="6d").collect_keep_max_age == 6 * 86400
    with pytest.raises(ValidationError, match="SCORER_DEDUP_WINDOW"):
        Settings(collect_keep_max_age="8d")
    with pytest.raises(ValidationError, match="SCORER_COLLECT_KEEP_MAX_AGE"):
        Settings(collect_keep_max_age="2d", dedup_window="1d")


@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["visit", "visit", "visit", "link", "sweep", "restore"]),
            st.integers(0, 5),  # which identity
            st.integers(0, 400),  # event time offset
            st.sampled_from(["acme.example", "globex.example"]),
        ),
        max_size=60,
    )
)
def test_a_restore_from_the_changelog_at_any_point_changes_nothing(
    steps: list[tuple[str, int, int, str]],
) -> None:
    """Identities rebuilt from their changelog records (what the stage writes at a
    commit and reads at restore) yield the same events as the state that never left."""
    kept_on = Identities(max_count=4, max_age=300)
    restored = Identities(max_count=4, max_age=300)
    for n, (step, who, offset, domain) in enumerate(steps):
        key, at = identity("a", f"v{who}"), T0 + offset
        if step == "restore":
            again = Identities(max_count=4, max_age=300)
            for known in list(restored.linked) + list(restored.unlinked):
                again.load(known, restored.record(known))
            again.counts, again.changed = restored.counts, set()
            restored = again
            continue
        if step == "visit":
            document = visit(f"e{n}", at)
            assert kept_on.visit(key, document, at) == restored.visit(key, document, at)
        elif step == "link":
            assert kept_on.link(key, domain, at) == restored.link(key, domain, at)
        else:
            assert kept_on.sweep(at) == restored.sweep(at)
        assert kept_on.kept_events == restored.kept_events
