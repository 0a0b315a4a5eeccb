"""`scorer erase`: erasure requests to the erasures topic, and their progress.

Requests go to `<prefix>erasures` (compacted, one partition: its offsets
order the requests), keyed by request id: every worker reads every request
(a lead id does not say its account), so the key routes nothing; keyed by
id, `--status ID` finds its request, and two requests for one target (an
erasure, then a suppression) never compact each other away. Each worker task writes, in the
transaction that applies requests, a progress record to
`<prefix>erasure-progress` (compacted), keyed ``<app id>/<partition>``:
``{"app", "task", "applied"}``, where `applied` is the erasures offset up to
which (exclusive) the task has applied every request. `erasure_status` reads
both topics whole: a task has applied a request when its `applied` is past
the request's offset. (Formats and the worker's side: scorer.stream.erasing.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from scorer.config import Settings
from scorer.errors import InvalidInputError
from scorer.kafka.client import client_options, partitions_of
from scorer.kafka.follower import read_whole
from scorer.kafka.publish import publish_one
from scorer.kafka.topics import Topics
from scorer.scoring.erasure import ErasureRequest


def progress_key(app_id: str, partition: int) -> bytes:
    return f"{app_id}/{partition}".encode()


def progress_value(app_id: str, partition: int, applied: int) -> bytes:
    return orjson.dumps({"app": app_id, "task": partition, "applied": applied})


async def publish_request(settings: Settings, request: ErasureRequest) -> int:
    """Write the request; returns its offset on the erasures topic."""
    topic = Topics.from_settings(settings).erasures
    return await publish_one(settings, topic, request.id.encode(), request.to_json())


@dataclass
class Status:
    """Where one request stands: its offset, and each known task's progress."""

    request: ErasureRequest | None
    offset: int | None
    tasks: int  # tasks of the app: the input topic's partitions
    applied: dict[int, bool] = field(default_factory=dict)  # task -> applied

    @property
    def done(self) -> bool:
        return self.offset is not None and sum(self.applied.values()) == self.tasks


async def erasure_status(settings: Settings, request_id: str) -> Status:
    """Which of the worker app's tasks (SCORER_APP_ID) have applied the request."""
    topics = Topics.from_settings(settings)
    found: dict[str, tuple[int, ErasureRequest]] = {}
    progress: dict[int, int] = {}

    def request(record: Any) -> None:
        key = record.key.decode(errors="replace") if record.key else ""
        if key != request_id:
            return
        if record.value is None:
            found.pop(key, None)
            return
        try:
            found[key] = (record.offset, ErasureRequest.from_json(record.value))
        except InvalidInputError:
            return

    def task(record: Any) -> None:
        if record.value is None:
            return
        try:
            doc = orjson.loads(record.value)
            if doc["app"] == settings.app_id:
                progress[int(doc["task"])] = int(doc["applied"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return

    await read_whole(settings, topics.erasures, request)
    await read_whole(settings, topics.erasure_progress, task)
    tasks = len(await partitions_of(client_options(settings), topics.visitor))
    entry = found.get(request_id)
    if entry is None:
        return Status(None, None, tasks)
    offset, erasure = entry
    applied = {p: progress.get(p, 0) > offset for p in range(tasks)}
    return Status(erasure, offset, tasks, applied)
