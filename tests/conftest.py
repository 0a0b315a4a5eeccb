"""Shared factories: ICPs, engines and events built from small dicts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from scorer.events import Event, decode_event
from scorer.icp import ICPDocument, parse_icp
from scorer.scoring import AccountState, Engine

if TYPE_CHECKING:
    from scorer.stream.store import AccountStore

BASE_ICP: dict[str, Any] = {
    "id": "saas",
    "version": 1,
    "fit": [
        {"field": "industry", "in": ["software", "saas"], "weight": 3, "must_have": True},
        {"field": "employees", "between": [50, 1000], "weight": 2},
        {"field": "country", "in": ["US", "CA", "GB"]},
    ],
    "intent": {
        "half_life": "7d",
        "signals": [
            {"type": "page_view", "points": 2},
            {"type": "page_view", "path": "/pricing*", "points": 10},
            {"type": "demo_request", "points": 40},
            {"type": "lead_created", "points": 20},
        ],
    },
    "personas": [{"name": "executive", "title_any": ["chief", "vp"], "points": 15}],
    "weights": {"fit": 0.6, "intent": 0.4},
    "tiers": {"A": 80, "B": 65, "C": 50},
    "hot": {"min_total": 65, "min_fit": 60, "cooldown": "24h"},
}


def make_icp(**overrides: Any) -> ICPDocument:
    return parse_icp({**BASE_ICP, **overrides})


def make_event(
    event_id: str = "e-1",
    type: str = "page_view",
    occurred_at: str = "2026-11-20T10:00:00Z",
    domain: str | None = "acme.example",
    **extra: Any,
) -> Event:
    doc: dict[str, Any] = {"event_id": event_id, "type": type, "occurred_at": occurred_at}
    if type == "lead_created":
        doc.update({"lead_id": "L-1", "email": f"pat@{domain or 'gmail.com'}"})
    else:
        doc["company_domain"] = domain
    doc.update(extra)
    return decode_event(orjson.dumps(doc))


@pytest.fixture
def icp_factory() -> Callable[..., ICPDocument]:
    return make_icp


@pytest.fixture
def engine_factory() -> Callable[..., Engine]:
    def build(*icps: ICPDocument) -> Engine:
        return Engine(icps or (make_icp(),))

    return build


@pytest.fixture
def state() -> AccountState:
    return AccountState()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real Kafka broker for the whole session (started here unless SCORER_TEST_BROKER)."""
    from tests.kafka_harness import start_broker

    started = start_broker(tmp_path_factory.mktemp("kafka"))
    yield started
    started.stop()


@pytest.fixture
def deployment(broker, tmp_path):  # type: ignore[no-untyped-def]
    """An isolated deployment (own app id and topic prefix); its workers stop afterwards."""
    from tests.kafka_harness import Deployment

    deployed = Deployment(broker, tmp_path)
    yield deployed
    deployed.stop_all()


@pytest.fixture
def services(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Slack, a webhook receiver, HubSpot and Salesforce fakes on loopback."""
    from tests.route.services import Services

    started = Services(tmp_path / "tls")
    yield started
    started.stop()


@pytest.fixture(scope="session")
def alerts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """Companies and the hot-account alerts `scorer score` gives for synthetic traffic."""
    from tests.integration.streaming import batch_alerts, sample

    tmp = tmp_path_factory.mktemp("alerts")
    companies, events = sample(tmp, 400, 12_000, seed=5)
    return companies, batch_alerts(tmp, companies, events)


def commit_writes(store: AccountStore, writes: dict[bytes, bytes | None], offset: int) -> None:
    """`writes` through a commit whose changelog ends at `offset`."""
    for key, value in writes.items():
        if value is None:
            store.pop(key)
        else:
            store[key] = value
    store.prepare()
    store.committed(offset)
