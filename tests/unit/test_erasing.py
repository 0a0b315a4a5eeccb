"""The worker's erasure log against a task (no broker): each request applied once per
task, its offset and progress record in the same commit, again after a rewind."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from scorer.config import Settings
from scorer.errors import ConfigError
from scorer.scoring import Engine
from scorer.scoring.erasure import ACCOUNT, LEAD, new_request
from scorer.scoring.intake import CompanyMap, take_event
from scorer.stream.backing import MemoryBacking
from scorer.stream.erasing import ERASURES_KEY, ErasureLog, applied_offset
from scorer.stream.metrics import Metrics
from scorer.stream.store import AccountStore
from scorer.stream.tasks import Task
from tests.conftest import make_icp

PROGRESS = "t-erasure-progress"


def record(offset: int, value: bytes | None) -> Any:
    return SimpleNamespace(offset=offset, value=value, key=b"k", topic="t-erasures")


def task_with_accounts() -> Task:
    store = AccountStore(MemoryBacking(), 7 * 86400.0, 3600.0, cache_limit=100)
    task = Task(0, [], TopicPartition("changelog", 0), store, None)
    engine = Engine([make_icp()])
    for n, domain in enumerate(["acme.example", "other.example"]):
        for kind in ("page_view", "lead_created"):
            doc: dict[str, Any] = {
                "event_id": f"hubspot-1-{n}-{kind}",
                "type": kind,
                "occurred_at": "2026-11-20T10:00:00Z",
            }
            if kind == "lead_created":
                doc.update(lead_id=f"hubspot-{n}", email=f"pat@{domain}", title="VP")
            else:
                doc["company_domain"] = domain
            take_event(engine, orjson.dumps(doc), store, CompanyMap({}))
            store.changed(domain)
    commit(task)
    return task


def commit(task: Task) -> None:
    """What a landed commit does to the task."""
    snapshot = task.prepare_commit()
    task.post_commit(snapshot, len(snapshot.writes), None)


def test_each_request_applies_once_and_writes_offset_and_progress_together() -> None:
    """A request changes the task's state once; its applied offset and progress record
    go into the same commit; a second pass applies nothing."""
    task = task_with_accounts()
    log = ErasureLog(Settings(app_id="t"), PROGRESS, Metrics())
    log.apply(record(0, new_request("r0", LEAD, "hubspot-0", 2e9).to_json()), lambda *a: None)
    log.apply(record(1, None), lambda *a: None)  # a deleted request moves the offset only
    log.release()
    assert log.erase(task) == 1
    assert task.store.pending[ERASURES_KEY] == orjson.dumps({"applied": 2})
    progress = [o for o in task.outbox if o[0] == PROGRESS]
    assert [orjson.loads(o[2]) for o in progress] == [{"app": "t", "task": 0, "applied": 2}]
    state = task.store.account("acme.example")
    assert not state.seen.contains("hubspot-1-0-lead_created", 0)
    assert state.seen.contains("hubspot-1-0-page_view", 0)
    commit(task)
    assert log.erase(task) == 0  # applied: nothing again
    log.apply(record(2, new_request("r2", ACCOUNT, "other.example", 2e9).to_json()), print)
    log.release()
    assert log.erase(task) == 1  # only the new one
    assert "other.example" not in task.store.domains()
    assert "acme.example" in task.store.domains()


def test_a_rewound_commit_applies_the_request_again() -> None:
    """An aborted transaction drops the applied offset with the state: the next pass
    applies the request again, on the state as committed."""
    task = task_with_accounts()
    log = ErasureLog(Settings(app_id="t"), PROGRESS, Metrics())
    log.apply(record(0, new_request("r0", ACCOUNT, "acme.example", 2e9).to_json()), print)
    log.release()
    assert log.erase(task) == 1
    task.prepare_commit()
    task.rewind()  # the commit failed
    assert applied_offset(task) == 0
    assert "acme.example" in task.store.domains()
    assert log.erase(task) == 1
    commit(task)
    assert applied_offset(task) == 1 and "acme.example" not in task.store.domains()


def test_a_task_ahead_of_the_log_waits_and_a_suppression_needs_the_salt() -> None:
    """A task that applied requests this worker has not read is `behind`; a
    suppression read without SCORER_ERASURE_SALT stops the worker."""
    task = task_with_accounts()
    task.store[ERASURES_KEY] = orjson.dumps({"applied": 5})
    log = ErasureLog(Settings(app_id="t"), PROGRESS, Metrics())
    log.apply(record(0, new_request("r0", LEAD, "x", 2e9).to_json()), print)
    log.release()
    assert log.behind(task)
    assert log.erase(task) == 0
    suppression = new_request("s", LEAD, "x", 2e9, salt=b"salt").to_json()
    with pytest.raises(ConfigError, match="SCORER_ERASURE_SALT"):
        log.apply(record(1, suppression), print)
    dead: list[str] = []
    log.apply(record(2, b"{}"), lambda rec, reason, detail: dead.append(reason))
    assert dead == ["schema"]


class CountingBacking(MemoryBacking):
    """A backing store that counts reads of the applied offset."""

    def __init__(self) -> None:
        super().__init__()
        self.offset_reads = 0

    def get(self, key: bytes) -> bytes | None:
        if key == ERASURES_KEY:
            self.offset_reads += 1
        return super().get(key)


def test_the_applied_offset_is_read_once_per_task_and_again_after_a_rewind() -> None:
    """The log keeps what it read and wrote of a task's applied offset: the store is
    not read at every batch, and is read again once the task has rewound (which
    takes the offset back to the last commit's)."""
    backing = CountingBacking()
    store = AccountStore(backing, 7 * 86400.0, 3600.0, cache_limit=100)
    task = Task(0, [], TopicPartition("changelog", 0), store, None)
    log = ErasureLog(Settings(app_id="t"), PROGRESS, Metrics())
    for _ in range(5):  # batches with no request: one read in all
        assert not log.behind(task) and log.erase(task) == 0
    assert backing.offset_reads == 1
    log.apply(record(0, new_request("r0", ACCOUNT, "acme.example", 2e9).to_json()), print)
    log.release()
    assert log.erase(task) == 1
    for _ in range(5):  # applied here: known without a read
        assert not log.behind(task) and log.erase(task) == 0
    assert backing.offset_reads == 1
    task.prepare_commit()
    task.rewind()  # the commit with the new offset failed
    assert log.applied(task) == 0 and backing.offset_reads == 2
    assert log.erase(task) == 1  # so the request is applied again
    commit(task)
    store.flush()
    other = ErasureLog(Settings(app_id="t"), PROGRESS, Metrics())
    assert other.applied(task) == 1  # another log reads what the commit wrote
