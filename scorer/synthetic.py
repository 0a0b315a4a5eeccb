"""Deterministic synthetic companies and traffic, for the demo, tests and benchmarks.

Plausible rather than realistic: a Zipf-shaped share of traffic per account,
a mix of page views, forms, demo requests and leads, some unidentified
visitors and free-mail leads, and a few late events.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

_SYLLABLES = [
    "ac",
    "me",
    "zen",
    "lo",
    "tri",
    "nova",
    "bri",
    "qua",
    "vex",
    "ora",
    "pix",
    "dyn",
    "sol",
    "hel",
    "kin",
    "mar",
    "tek",
    "fly",
    "ver",
    "gal",
    "neo",
    "xi",
    "ra",
    "bo",
]
_SUFFIXES = ["", "ly", "io", "labs", "hq", "soft", "data", "works", "cloud", "ai"]
_INDUSTRIES = [
    "software",
    "saas",
    "fintech",
    "banking",
    "insurance",
    "healthcare",
    "retail",
    "manufacturing",
    "education",
    "media",
    "logistics",
]
_INDUSTRY_WEIGHTS = [20, 18, 8, 4, 3, 10, 10, 9, 6, 6, 6]
_COUNTRIES = ["US", "CA", "GB", "DE", "FR", "NL", "IN", "BR", "AU", "SE"]
_COUNTRY_WEIGHTS = [40, 8, 12, 9, 6, 4, 8, 5, 5, 3]
_TECH = [
    "hubspot",
    "salesforce",
    "marketo",
    "segment",
    "snowflake",
    "databricks",
    "stripe",
    "zendesk",
    "intercom",
    "slack",
    "aws",
    "gcp",
]
_SOURCES = ["clearbit", "zoominfo", "crm", "apollo", "manual"]
_PAGES = [
    "/",
    "/pricing",
    "/pricing/enterprise",
    "/docs/getting-started",
    "/blog/icp-scoring",
    "/security",
    "/customers",
    "/careers",
    "/integrations/hubspot",
    "/about",
]
_PAGE_WEIGHTS = [25, 12, 4, 12, 14, 5, 8, 4, 8, 8]
_TITLES = [
    "VP Sales",
    "Chief Revenue Officer",
    "Head of Growth",
    "Marketing Manager",
    "Sales Director",
    "Software Engineer",
    "Account Executive",
    "CFO",
    "Analyst",
    None,
]
_FREE_MAIL = ["gmail.com", "outlook.com", "yahoo.com"]
EPOCH = datetime(2026, 11, 1, tzinfo=UTC)


def company_domains(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    domains: list[str] = []
    seen: set[str] = set()
    for index in itertools.count():
        if len(domains) == count:
            break
        stem = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3)))
        domain = f"{stem}{rng.choice(_SUFFIXES)}.example"
        if domain in seen:
            domain = f"{stem}{index}.example"
        seen.add(domain)
        domains.append(domain)
    return domains


def company(domain: str, rng: random.Random) -> dict[str, Any]:
    """One firmographic record, with sources and confidences, some fields missing."""
    stem = domain.split(".")[0]
    employees = int(rng.lognormvariate(5.0, 1.6)) + 1
    record: dict[str, Any] = {
        "domain": domain,
        "name": stem.capitalize() + rng.choice(["", " Inc", " Ltd", " GmbH", " Labs"]),
        "industry": rng.choices(_INDUSTRIES, _INDUSTRY_WEIGHTS)[0],
        "employees": employees,
        "annual_revenue_usd": employees * rng.randint(80_000, 300_000),
        "country": rng.choices(_COUNTRIES, _COUNTRY_WEIGHTS)[0],
        "tech_stack": sorted(rng.sample(_TECH, rng.randint(0, 5))),
        "business_model": rng.choice(["b2b", "b2b", "b2c", "marketplace"]),
    }
    if rng.random() < 0.6:
        round_at = EPOCH - timedelta(days=rng.randint(10, 900))
        record["funding"] = {
            "last_round": rng.choice(["seed", "series_a", "series_b", "series_c"]),
            "last_round_at": round_at.date().isoformat(),
            "total_usd": rng.randint(1, 200) * 1_000_000,
        }
    for field in ("employees", "country", "tech_stack", "annual_revenue_usd"):
        if rng.random() < 0.08:
            del record[field]
    record["sources"] = {
        field: {
            "source": rng.choice(_SOURCES),
            "confidence": round(rng.uniform(0.5, 1.0), 2),
            "updated_at": (EPOCH - timedelta(days=rng.randint(0, 200))).isoformat(),
        }
        for field in ("industry", "employees", "country", "tech_stack")
        if field in record
    }
    return record


def companies(count: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed + 1)
    for domain in company_domains(count, seed):
        yield company(domain, rng)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def events(
    count: int,
    domains: list[str],
    seed: int = 11,
    start: datetime = EPOCH,
    mean_gap_s: float = 2.0,
    zipf_s: float = 1.0,
) -> Iterator[dict[str, Any]]:
    """`count` events over `domains`, Zipf-distributed, in roughly time order."""
    rng = random.Random(seed)
    weights = [1.0 / (rank**zipf_s) for rank in range(1, len(domains) + 1)]
    cumulative = list(itertools.accumulate(weights))
    clock = start
    produced = 0
    while produced < count:
        batch = min(4096, count - produced)
        picks = rng.choices(domains, cum_weights=cumulative, k=batch)
        for domain in picks:
            produced += 1
            clock += timedelta(seconds=rng.expovariate(1.0 / mean_gap_s))
            at = clock
            if rng.random() < 0.02:  # late arrival
                at = clock - timedelta(minutes=rng.randint(1, 600))
            yield _event(rng, produced, domain, at)


def _event(rng: random.Random, serial: int, domain: str, at: datetime) -> dict[str, Any]:
    roll = rng.random()
    event_id = f"e-{serial:09d}-{rng.getrandbits(32):08x}"
    if roll < 0.08:
        user = rng.choice(["alex", "sam", "kim", "jo", "lee", "max"]) + str(rng.randint(1, 999))
        mail_domain = rng.choice(_FREE_MAIL) if rng.random() < 0.15 else domain
        return {
            "event_id": event_id,
            "type": "lead_created",
            "occurred_at": _iso(at),
            "lead_id": f"L-{serial}",
            "email": f"{user}@{mail_domain}",
            "title": rng.choice(_TITLES),
            "full_name": f"{user.capitalize()} Example",
            "source": rng.choice(["webform", "crm", "import"]),
            "company_domain": None,
        }
    kind = "page_view" if roll < 0.95 else ("form_submit" if roll < 0.98 else "demo_request")
    identified = rng.random() >= 0.12
    return {
        "event_id": event_id,
        "type": kind,
        "occurred_at": _iso(at),
        "company_domain": ("www." + domain if rng.random() < 0.1 else domain)
        if identified
        else None,
        "visitor_id": f"v-{rng.getrandbits(48):012x}",
        "session_id": f"s-{rng.getrandbits(40):010x}",
        "page_url": "https://scorer.example"
        + rng.choices(_PAGES, _PAGE_WEIGHTS)[0]
        + f"?utm_source={rng.choice(['google', 'linkedin', 'newsletter', 'direct'])}",
        "referrer": rng.choice(["https://www.google.com/", "https://www.linkedin.com/", None]),
        "ip": f"203.0.113.{rng.randint(1, 254)}",
    }


# How a website reports the synthetic events through Segment: its visitors stay
# anonymous for a few pages, until a `group` call (the site's reverse-IP lookup
# or a signup form) names their company, which credits those pages.
_TRACKED = {"form_submit": "Form Submitted", "demo_request": "Demo Requested"}
_VISITORS_PER_COMPANY = 8
_NEW_VISITOR = 0.2
_PAGES_BEFORE_GROUP = (1, 4)


def segment_calls(events: Iterable[dict[str, Any]], seed: int = 13) -> Iterator[dict[str, Any]]:
    """The Segment-spec calls (`page`, `track`, `identify`, `group`, as
    `POST /v1/batch` carries them) a site would send for `events`.

    Each company has a few anonymous visitors at a time; a visitor's events
    carry only its anonymousId, and after 1-4 of them a `group` call with the
    company's website links it (its earlier events are then stitched to the
    company). Events without a company come from visitors never linked; a lead
    is an `identify` with its work (or free-mail) email and title. Each call's
    messageId is the event id, so the workers' dedup sees a retried call once.
    """
    rng = random.Random(seed)
    visitors: dict[str, list[list[Any]]] = {}  # domain -> [anonymousId, events before the link]
    serial = 0
    for doc in events:
        at, message_id = doc["occurred_at"], doc["event_id"]
        if doc["type"] == "lead_created":
            traits = {"email": doc["email"], "title": doc["title"]}
            yield {
                "type": "identify",
                "userId": doc["lead_id"],
                "messageId": message_id,
                "timestamp": at,
                "traits": traits,
            }
            continue
        serial += 1
        domain = doc["company_domain"]
        pool = visitors.setdefault(domain or "", [])
        if domain is None or not pool or rng.random() < _NEW_VISITOR:
            pool.append([f"anon-{seed}-{serial:x}", rng.randint(*_PAGES_BEFORE_GROUP)])
            del pool[:-_VISITORS_PER_COMPANY]
            visitor = pool[-1]
        else:
            visitor = rng.choice(pool)
        call: dict[str, Any] = {
            "anonymousId": visitor[0],
            "messageId": message_id,
            "timestamp": at,
            "context": {"ip": doc["ip"], "page": {"referrer": doc["referrer"]}},
        }
        if doc["type"] in _TRACKED:
            call.update(type="track", event=_TRACKED[doc["type"]], properties={})
        else:
            call.update(type="page", properties={"url": doc["page_url"]})
        yield call
        if domain is not None and visitor[1] > 0:
            visitor[1] -= 1
            if visitor[1] == 0:
                yield {
                    "type": "group",
                    "anonymousId": visitor[0],
                    "groupId": domain,
                    "messageId": f"group-{message_id}",
                    "timestamp": at,
                    "traits": {"website": f"https://{domain}/"},
                }


DAY = 86400.0


def activity(rank: int, top: int, zipf_s: float = 1.0) -> int:
    """Events of the domain of popularity `rank` (1 = busiest) over a run: Zipf's
    rank-frequency law, `top / rank**s`, and at least one (every domain is seen)."""
    return max(1, int(top / rank**zipf_s))


def year_of_traffic(
    domains: list[str],
    seed: int = 17,
    days: int = 365,
    top: int | None = None,
    zipf_s: float = 1.0,
    start: datetime = EPOCH,
) -> Iterator[tuple[float, dict[str, Any]]]:
    """A year (`days`) of events over every one of `domains`, in arrival order, as
    (occurred_at in epoch seconds, event document); deterministic from `seed`.

    The domain at index i has `activity(i + 1, top)` events (`top` defaults to
    1/50 of the domains, so 98 % are seen once: the long tail of a B2B site).
    A domain seen once comes on a uniformly random day; a busier one visits
    from a random day on with exponential gaps whose mean is drawn per domain
    (1 to 120 days, so some come back after months), wrapping around the
    year. As in `events`, 2 % arrive up to 10 hours late, some visitors stay
    unidentified and some leads use a free-mail address."""
    rng = random.Random(seed)
    top = max(1, len(domains) // 50) if top is None else top
    span = days * DAY
    arrivals: list[tuple[float, int]] = []
    for index in range(len(domains)):
        count = activity(index + 1, top, zipf_s)
        moment = rng.random() * span
        arrivals.append((moment, index))
        if count > 1:
            gap = min(span / count, DAY * rng.choice((1, 3, 10, 30, 120)))
            for _ in range(count - 1):
                moment = (moment + rng.expovariate(1.0 / gap)) % span
                arrivals.append((moment, index))
    arrivals.sort()
    base = start.timestamp()
    serial = 0
    for moment, index in arrivals:
        if rng.random() < 0.02:  # late arrival
            moment = max(0.0, moment - 60.0 * rng.randint(1, 600))
        at, when = base + moment, start + timedelta(seconds=moment)
        while True:  # unresolved events (no domain, free mail) come on top of the domain's
            serial += 1
            doc = _event(rng, serial, domains[index], when)
            yield at, doc
            if doc["type"] != "lead_created":
                if doc["company_domain"] is not None:
                    break
            elif doc["email"].split("@")[1] not in _FREE_MAIL:
                break


class ActiveAccounts:
    """How many accounts had an event in the last `ttl` at the end of each day:
    what account expiry's state is measured against. Events are added in
    arrival order with `now`, the newest `occurred_at` so far (the event time
    a scorer has reached), so a day's count holds the events that arrived
    before the day ended (a late one counts from its arrival)."""

    def __init__(self, ttl: float, origin: float, days: int) -> None:
        self.ttl, self.origin, self.days = ttl, origin, days
        self.diff = [0] * (days + 1)
        self.until: dict[str, float] = {}  # account -> end of its last active interval

    def add(self, account: str, at: float, now: float) -> None:
        before = self.until.get(account, now)
        start, end = max(now, before), at + self.ttl
        if end <= start:
            return
        self.until[account] = end
        # day d ends at origin + (d + 1) days; it counts the account when start < end of d <= end
        first = max(0, math.floor((start - self.origin) / DAY))
        last = min(self.days, max(0, math.ceil((end - self.origin) / DAY - 1)))
        if first < last:
            self.diff[first] += 1
            self.diff[last] -= 1

    def per_day(self) -> list[int]:
        return list(itertools.accumulate(self.diff[: self.days]))
