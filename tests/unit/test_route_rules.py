"""routes.yaml validation and matching, the messages built for each destination,
and the delivery bookkeeping (backoff, pending offsets, delivery log)."""

from __future__ import annotations

import hashlib
import hmac
import random
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scorer.route.delivery import BACKOFF_CAP, DeliveryLog, Pending, backoff
from scorer.route.destinations import Job
from scorer.route.feed import card
from scorer.route.messages import account_link, sign, slack_blocks, task_text
from scorer.route.rules import InvalidRoutesError, destinations_for, load_routes, parse_routes

SAMPLES = Path(__file__).parents[2] / "scorer" / "samples" / "routes"
ALERT: dict[str, Any] = {
    "type": "hot_account",
    "alert_id": "a1",
    "account": {"domain": "acme.example", "name": "Acme"},
    "icp": {"id": "midmarket-saas", "version": 3},
    "score": {"total": 82.5, "fit": 90.0, "intent": 70.0, "data_quality": 0.9},
    "tier": "A",
    "reasons": [
        {"field": "country", "matched": True, "weight": 1, "value": "US"},
        {"field": "industry", "matched": True, "weight": 3, "value": "software"},
        {"field": "employees", "matched": False, "weight": 2, "value": 20},
    ],
    "trigger": {
        "event_id": "e1",
        "type": "page_view",
        "occurred_at": "2026-11-20T10:00:00Z",
        "path": "/pricing",
    },
}
COMPANY = {
    "domain": "acme.example",
    "country": "US",
    "industry": "Software",
    "employees": 400,
    "owner": "jane",
}


def routes(rules: list[dict[str, Any]], default: list[str] | None = None) -> Any:
    return parse_routes(
        {
            "destinations": {"a": {"type": "feed"}, "b": {"type": "feed"}, "c": {"type": "feed"}},
            "rules": rules,
            "default": default or [],
        }
    )


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_bundled_route_samples_are_valid(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every bundled routes sample validates once its ${VAR} secrets are set."""
    for name in re.findall(r"\$\{(\w+)\}", path.read_text()):
        monkeypatch.setenv(name, "set")
    assert load_routes(path).destinations


def test_literal_secret_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret written in the file is an error naming the key, and the value is not shown."""
    doc = {"destinations": {"hook": {"type": "webhook", "url": "https://x", "secret": "s3cr3t"}}}
    with pytest.raises(InvalidRoutesError) as info:
        parse_routes(doc)
    assert info.value.problems == [
        "destinations.hook.secret: secrets are environment references like ${NAME}, "
        "never literal in the file"
    ]
    assert "s3cr3t" not in str(info.value)


def test_unset_environment_reference_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """${VAR} with VAR unset names both the key and the variable."""
    monkeypatch.delenv("NOT_SET_TOKEN", raising=False)
    doc = {"destinations": {"s": {"type": "slack", "token": "${NOT_SET_TOKEN}", "channel": "#x"}}}
    with pytest.raises(InvalidRoutesError, match=r"destinations\.s\.token: .*NOT_SET_TOKEN"):
        parse_routes(doc)


def test_errors_name_the_key() -> None:
    """Unknown keys, unknown destinations and bad types are reported by path."""
    with pytest.raises(InvalidRoutesError) as info:
        parse_routes(
            {
                "destinations": {"f": {"type": "feed", "colour": "red"}},
                "rules": [{"to": ["f"], "match": {"tier": "A"}}],
            }
        )
    assert "destinations.f.colour: unknown key" in info.value.problems
    assert "rules[0].match.tier: Input should be a valid list" in info.value.problems
    with pytest.raises(InvalidRoutesError, match=r"rules\[0\]\.to: no destination named 'x'"):
        parse_routes({"destinations": {"f": {"type": "feed"}}, "rules": [{"to": ["x"]}]})


def test_rules_match_in_order_until_stop_and_default_catches_the_rest() -> None:
    """Matching rules add their destinations in order; `stop` ends; default only when none."""
    r = routes(
        [
            {"match": {"tier": ["A"]}, "to": ["a"]},
            {"match": {"icp": ["midmarket-saas"]}, "to": ["b", "a"], "stop": True},
            {"to": ["c"]},
        ],
        default=["c"],
    )
    assert destinations_for(r, ALERT, COMPANY) == ["a", "b"]
    other = {**ALERT, "tier": "B", "icp": {"id": "other", "version": 1}}
    assert destinations_for(r, other, COMPANY) == ["c"]
    assert destinations_for(
        routes([{"match": {"tier": ["C"]}, "to": ["a"]}], ["b"]), ALERT, None
    ) == ["b"]


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ({"min_total": 80}, True),
        ({"min_total": 90}, False),
        ({"country": ["us", "ca"]}, True),
        ({"industry": ["software"]}, True),
        ({"industry": ["fintech"]}, False),
        ({"employees": [100, 500]}, True),
        ({"employees": [500, 5000]}, False),
        ({"owner": ["jane"]}, True),
        ({"fields": {"domain": ["acme.example"]}}, True),
        ({"fields": {"funding.last_round": ["seed"]}}, False),
    ],
)
def test_account_field_conditions(match: dict[str, Any], expected: bool) -> None:
    """Account fields match case-insensitively; ranges are inclusive; missing fields never."""
    r = routes([{"match": match, "to": ["a"]}])
    assert (destinations_for(r, ALERT, COMPANY) == ["a"]) is expected


def test_account_conditions_never_match_without_a_company_record() -> None:
    """An account with no company record matches no account-field condition."""
    r = routes([{"match": {"employees": [0, 10**9]}, "to": ["a"]}], default=["b"])
    assert destinations_for(r, ALERT, None) == ["b"]


def test_slack_blocks_stay_within_block_kit_limits() -> None:
    """Header ≤ 150 chars (plain_text), sections ≤ 3000, heaviest reasons first, no email."""
    long_name = {**ALERT, "account": {"domain": "acme.example", "name": "N" * 400}}
    _, blocks = slack_blocks(long_name, "https://crm.example/acme")
    assert len(blocks[0]["text"]["text"]) <= 150 and blocks[0]["text"]["type"] == "plain_text"
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks if b["type"] == "section")
    assert blocks[2]["text"]["text"].splitlines()[0].startswith("• industry = software")
    assert "page_view /pricing" in blocks[3]["elements"][0]["text"]
    assert blocks[-1]["elements"][0]["url"] == "https://crm.example/acme"
    lead = {**ALERT, "lead": {"lead_id": "L1", "title": "VP Sales", "persona": "executive"}}
    assert "by executive · VP Sales" in slack_blocks(lead)[1][3]["elements"][0]["text"]
    assert "@" not in orjson.dumps(slack_blocks(lead)).decode()


def test_account_link_only_when_every_field_is_known() -> None:
    """A CRM link template fills from the company record, or gives no link."""
    template = "https://crm.example/{owner}/{domain}"
    assert (
        account_link(template, "acme.example", COMPANY) == "https://crm.example/jane/acme.example"
    )
    assert account_link(template, "acme.example", {}) == ""
    assert account_link(None, "acme.example", COMPANY) == ""


def test_task_text_names_the_account_and_the_reasons() -> None:
    """The CRM task says which account, why, and which alert."""
    subject, body = task_text(ALERT)
    assert subject == "Hot account: Acme (acme.example) (tier A)"
    assert "- industry = software (weight 3)" in body and "Alert a1" in body


def test_signature_verifies_as_the_docs_show() -> None:
    """The docs' ten-line verification accepts our signature and rejects a changed body."""
    body, stamp, secret = orjson.dumps(ALERT), 1_790_000_000, b"whsec"
    header = sign(secret, stamp, body)

    def verify(secret: bytes, timestamp: str, body: bytes, header: str) -> bool:
        expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
        return hmac.compare_digest("v1=" + expected.hexdigest(), header)

    assert verify(secret, str(stamp), body, header)
    assert not verify(secret, str(stamp), body + b" ", header)


def test_feed_card_carries_what_the_page_shows() -> None:
    """A feed card: account, ICP, tier, scores, top reasons and the trigger."""
    shown = card(ALERT)
    assert shown["tier"] == "A" and shown["total"] == 82.5
    assert shown["reasons"][0].startswith("industry") and shown["trigger"] == "page_view /pricing"


@given(st.integers(1, 30), st.none() | st.floats(0, 1000))
def test_backoff_is_bounded_and_honours_retry_after(attempt: int, after: float | None) -> None:
    """Backoff: Retry-After when given (capped), else full jitter below the cap."""
    delay = backoff(attempt, after, random.Random(attempt))
    if after is not None:
        assert delay == min(after, BACKOFF_CAP * 5)
    else:
        assert 0 <= delay <= min(BACKOFF_CAP, 0.5 * 2 ** (attempt - 1))


@given(st.lists(st.integers(0, 3), min_size=1, max_size=40), st.randoms())
def test_pending_never_commits_past_an_unfinished_offset(jobs: list[int], rng: Any) -> None:
    """For any finishing order, the committable offset is the first unfinished one."""
    pending = Pending()
    left = {}
    for offset, count in enumerate(jobs):
        pending.add(offset, count)
        if count:
            left[offset] = count
    work = [o for o, n in left.items() for _ in range(n)]
    rng.shuffle(work)
    for offset in work:
        pending.done(offset)
        left[offset] -= 1
        if not left[offset]:
            del left[offset]
        assert pending.committable() == (min(left) if left else len(jobs))


def test_delivery_log_round_trip_and_prune() -> None:
    """A logged delivery is seen again after a read-back, and pruned once committed."""
    job = Job(ALERT, orjson.dumps(ALERT), None, partition=2, offset=7, timestamp=1.0)
    writer = DeliveryLog("t")
    _, value = writer.entry("slack", job, "delivered", "123.45")
    reader = DeliveryLog("t")
    remembered: list[tuple[str, str, float]] = []
    sender = SimpleNamespace(remember=lambda d, ref, at: remembered.append((d, ref, at)))
    reader.apply(
        SimpleNamespace(key=DeliveryLog.key("a1", "slack"), value=value), {"slack": sender}
    )  # type: ignore[dict-item]
    assert reader.seen("a1", "slack") and not reader.seen("a1", "hook")
    assert remembered == [("acme.example", "123.45", 1.0)]
    reader.prune({2: 7})
    assert reader.seen("a1", "slack")
    reader.prune({2: 8})
    assert not reader.seen("a1", "slack")
