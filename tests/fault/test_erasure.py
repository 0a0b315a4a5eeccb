"""Erasure under traffic, with a `kill -9` of a worker mid-way.

Two workers (RocksDB stores) score synthetic traffic plus one lead whose
event id carries its lead id (as HubSpot's does), and a router puts every
alert on its feed (plus one alert triggered by that lead). Once that is
scored, the lead and the busiest other account are erased; traffic goes on
(with a late replay of the erased lead's event and old events of the erased
account) while one worker is killed with SIGKILL and restarted on its own
store. Afterwards no trace of the lead id or title, or of the erased
account, may be left in any task's store (read directly), in the latest
changelog value of any key, in the feed (its backlog, and an open page told
to drop the cards), in the router's delivery log, or in any output produced
after the request; the lead's account keeps its other signals, and
`scorer erase --status` says every task has applied both requests.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from scorer.events import event_from_document
from scorer.stream.backing import RocksBacking, store_path
from tests.fault.recovery import table_state, wait_caught_up
from tests.integration.streaming import event_records, sample, setup_deployment
from tests.kafka_harness import Deployment, Worker

SECRET_LEAD = "hubspot-990077"
SECRET_EVENT = "hubspot-4242-990077"
SECRET_TITLE = "Chief Erasure Officer"
SECRETS = (SECRET_LEAD.encode(), b"990077", SECRET_TITLE.encode())


def secret_in(data: bytes | None) -> bool:
    return data is not None and any(secret in data for secret in SECRETS)


def of_account(key: bytes | None, domain: str) -> bool:
    """A changelog or store key of the account: its record or one of its id chunks."""
    return key is not None and (key == domain.encode() or key.startswith(domain.encode() + b"\x1f"))


async def wait_applied(deployment: Deployment, request_id: str, timeout: float = 60) -> str:
    """`scorer erase --status` until it exits 0 (every task has applied the request)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(
            deployment.run, "erase", "--status", request_id, check=False
        )
        if result.returncode == 0:
            return result.stdout
        if time.monotonic() > deadline:
            raise AssertionError(f"request {request_id} not applied everywhere:\n{result.stdout}")
        await asyncio.sleep(1.0)


def feed_frames(port: int, seconds: float, idle: float = 2) -> list[bytes]:
    """The lines the /feed/events stream sends within `seconds` (or until it is
    `idle` seconds without one), its backlog first."""
    lines: list[bytes] = []
    deadline = time.monotonic() + seconds
    url = f"http://127.0.0.1:{port}/feed/events"
    try:
        with urllib.request.urlopen(url, timeout=idle) as stream:
            while time.monotonic() < deadline:
                lines.append(stream.readline())
    except TimeoutError:  # idle: the backlog is all there is
        pass
    return [line for line in lines if line.strip()]


def lead_alert(domain: str) -> dict[str, Any]:
    """An alert that the erased lead triggered, as a worker writes one."""
    return {
        "type": "hot_account",
        "alert_id": "erasure-test-lead-alert",
        "account": {"domain": domain, "name": None},
        "icp": {"id": "midmarket-saas", "version": 1},
        "score": {"total": 90.0, "fit": 90.0, "intent": 90.0, "data_quality": 1.0},
        "tier": "A",
        "hot": True,
        "disqualified": False,
        "excluded": False,
        "reasons": [],
        "trigger": {
            "event_id": SECRET_EVENT,
            "type": "lead_created",
            "occurred_at": "2026-11-02T10:00:00Z",
            "points": 35.0,
        },
        "lead": {"lead_id": SECRET_LEAD, "title": SECRET_TITLE, "persona": "executive"},
        "scored_at": "2026-11-02T10:00:01Z",
    }


async def test_erasure_under_traffic_with_a_kill(deployment: Deployment, tmp_path: Path) -> None:
    """After erasing a lead and an account under traffic and a kill -9: no trace in
    stores, latest changelog values or later outputs; other signals kept."""
    companies, events = sample(tmp_path, 200, 8000, seed=23)
    setup_deployment(deployment, companies)
    counts = Counter(a for a in (event_from_document(d).account for d in events) if a is not None)
    lead_account = counts.most_common(1)[0][0]
    lead = {
        "event_id": SECRET_EVENT,
        "type": "lead_created",
        "occurred_at": "2026-11-02T10:00:00Z",
        "lead_id": SECRET_LEAD,
        "email": f"erin@{lead_account}",
        "title": SECRET_TITLE,
        "company_domain": lead_account,
    }
    first, second = events[:4000], events[4000:]
    routes = tmp_path / "routes.yaml"
    routes.write_text("destinations:\n  feed: {type: feed, keep: 1000}\ndefault: [feed]\n")
    router = deployment.start_router(routes)
    router.wait_ready(60)
    await deployment.produce(event_records(deployment, [*first[:2000], lead, *first[2000:]]))
    dirs = {name: str(tmp_path / f"data-{name}") for name in ("a", "b")}
    workers: dict[str, Worker] = {}

    def start(name: str) -> Worker:
        workers[name] = deployment.start_worker(
            SCORER_STORE="rocksdb", SCORER_DATA_DIR=dirs[name], SCORER_EMIT_SCORES="true"
        )
        return workers[name]

    start("a").wait_ready()
    start("b").wait_ready()
    scores = await deployment.consume(
        "account-scores", until=lambda rs: any(secret_in(r.value) for r in rs), timeout=120
    )
    assert any(secret_in(r.value) for r in scores)  # the lead and its title were out there
    for topic in ("visitor-events", "lead-events"):
        await wait_caught_up(deployment, topic, timeout=120)
    await deployment.produce(
        [
            (
                deployment.topic("hot-accounts"),
                lead_account.encode(),
                orjson.dumps(lead_alert(lead_account)),
            )
        ]
    )
    alerts = await deployment.documents("hot-accounts", idle=3)
    alerted = Counter(a["account"]["domain"] for a in alerts)
    alerted.pop(lead_account, None)
    erased_account = alerted.most_common(1)[0][0]  # the account that alerted most
    erased_alerts = {
        a["alert_id"]
        for a in alerts
        if a["account"]["domain"] == erased_account
        or a.get("lead", {}).get("lead_id") == SECRET_LEAD
    }
    assert len(erased_alerts) > 1  # the erased account alerted, and so did the lead
    deliveries = await deployment.consume(
        "route-deliveries",
        until=lambda rs: {r.key.split(b"|")[0].decode() for r in rs} >= erased_alerts,
        timeout=60,
    )
    before = feed_frames(router.port, 3)
    assert [f for f in before if secret_in(f)] and [
        f for f in before if erased_account.encode() in f
    ]
    page = asyncio.create_task(asyncio.to_thread(feed_frames, router.port, 25, 25))  # an open page
    await asyncio.sleep(3)

    requested = time.time()
    deployment.run("erase", "--lead", SECRET_LEAD, "--id", "erase-lead")
    deployment.run("erase", "--account", erased_account, "--id", "erase-account")
    # Traffic goes on: new events, a replay of the erased lead's event, old events
    # of the erased account (all from before the request: erased on arrival).
    late = [d for d in first if event_from_document(d).account == erased_account][:50]
    more = [*second[:2000], lead, *late, *second[2000:]]
    records = event_records(deployment, more)
    chunks = [records[i : i + 200] for i in range(0, len(records), 200)]
    kill_after = random.Random(23).randrange(1, 6)
    for number, chunk in enumerate(chunks):
        await deployment.produce(chunk)
        if number == kill_after:
            workers.pop("a").kill()
            start("a")
        await asyncio.sleep(0.2)
    workers["a"].wait_ready()
    for topic in ("visitor-events", "lead-events"):
        await wait_caught_up(deployment, topic, timeout=180)
    status = await wait_applied(deployment, "erase-lead")
    assert "applied by 4 of 4 tasks" in status, status
    await wait_applied(deployment, "erase-account")

    # The latest changelog value of every key.
    changelog = await deployment.consume(f"{deployment.name}-accounts-changelog", idle=3)
    changelog_topic = deployment.topic(f"{deployment.name}-accounts-changelog")
    latest: dict[bytes, bytes | None] = {}
    for record in changelog:
        latest[record.key] = record.value
    live = {key: value for key, value in latest.items() if value is not None}
    assert not [key for key, value in live.items() if secret_in(key) or secret_in(value)]
    assert not [key for key in live if of_account(key, erased_account)]
    accounts, applied = table_state(changelog)
    assert erased_account not in accounts
    assert SECRET_EVENT not in applied
    kept = {d["event_id"] for d in events if event_from_document(d).account == lead_account}
    assert lead_account in accounts and kept & applied  # the account kept its other signals

    # Every output produced after the request.
    for topic in ("hot-accounts", "account-scores"):
        after = [
            r for r in await deployment.consume(topic, idle=3) if r.timestamp / 1000 >= requested
        ]
        assert after, f"no {topic} output after the request: the traffic went on"
        assert not [r for r in after if secret_in(r.value)]
        assert not [r for r in after if of_account(r.key, erased_account)]

    # The feed: an open page was told to drop the cards; a page opened now has none.
    erase_frames = [f for f in await page if f.startswith(b"event: erase")]
    assert erase_frames, "the open page got no erase event"
    dropped = set()
    frames = await page
    for i, frame in enumerate(frames[:-1]):
        if frame.startswith(b"event: erase"):
            dropped |= set(orjson.loads(frames[i + 1][6:]))
    assert dropped == erased_alerts
    after_feed = feed_frames(router.port, 3)
    assert after_feed and not [f for f in after_feed if secret_in(f)]
    assert not [f for f in after_feed if erased_account.encode() in f]
    # The delivery log: every record naming the erased account is tombstoned.
    deadline = time.monotonic() + 60
    while True:
        latest: dict[bytes, bytes | None] = {}
        for record in await deployment.consume("route-deliveries", idle=2):
            latest[record.key] = record.value
        naming = [k for k, v in latest.items() if v and orjson.loads(v)["a"] == erased_account]
        if not naming:
            break
        assert time.monotonic() < deadline, f"delivery-log records left: {naming[:3]}"
        await asyncio.sleep(1)
    assert len([r for r in deliveries if r.key.split(b"|")[0].decode() in erased_alerts]) > 1

    # Each task's store, read directly once the workers have stopped: the store
    # of each partition on the worker that owned it last.
    owners = {name: owned(worker) for name, worker in workers.items()}
    for worker in workers.values():
        worker.terminate()
    assert sorted(p for parts in owners.values() for p in parts) == [0, 1, 2, 3], owners
    for name, parts in owners.items():
        for partition in parts:
            path = store_path(dirs[name], deployment.name, changelog_topic, partition)
            backing = RocksBacking(path)
            try:
                keys = backing.db.keys()
                assert keys, path
                assert not [k for k in keys if secret_in(k) or secret_in(backing.get(k))], path
                assert not [k for k in keys if of_account(k, erased_account)], path
            finally:
                backing.close()


def owned(worker: Worker) -> list[int]:
    """The partitions a worker's log last said it has tasks for."""
    found = re.findall(r"tasks: partitions \[([0-9, ]*)\]", worker.log_path.read_text())
    assert found, worker.log()
    return [int(p) for p in found[-1].split(",") if p.strip()]
