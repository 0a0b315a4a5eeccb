"""Dead-letter records: the original bytes plus headers saying why and where from."""

from __future__ import annotations

from collections.abc import Sequence

Headers = list[tuple[str, bytes]]


def dlq_headers(
    reason: str,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    original: Sequence[tuple[str, bytes]] | None = None,
) -> Headers:
    """The original record's headers, then ours (prefixed ``scorer.``)."""
    headers: Headers = list(original or ())
    headers += [
        ("scorer.reason", reason.encode()),
        ("scorer.detail", detail.encode()),
        ("scorer.topic", topic.encode()),
        ("scorer.partition", str(partition).encode()),
        ("scorer.offset", str(offset).encode()),
    ]
    return headers
