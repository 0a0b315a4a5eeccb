"""Group assignment by task: every input topic's partition p goes to one member.

Kafka's own assignors hand out topic-partitions one by one, so a member could
get visitor-events 0 and lead-events 2: the account state of partition 0
would then be split across workers. As Kafka Streams does, this assignor
assigns partition *numbers* (tasks), each with every subscribed topic's
partition of that number, spread evenly over the members.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

log = logging.getLogger("scorer.worker")


def assign_tasks(members: Iterable[str], tasks: Iterable[int]) -> dict[str, list[int]]:
    """Task numbers dealt round-robin over the sorted members (counts differ by <= 1)."""
    ordered = sorted(members)
    assignment: dict[str, list[int]] = {member: [] for member in ordered}
    for i, task in enumerate(sorted(tasks)):
        assignment[ordered[i % len(ordered)]].append(task)
    return assignment


class TaskAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    name = "scorer-tasks"
    version = 0

    @classmethod
    def assign(
        cls, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        topics: set[str] = set()
        for metadata in members.values():
            topics.update(metadata.subscription)
        numbers: set[int] = set()
        for topic in topics:
            partitions = cluster.partitions_for_topic(topic)
            if partitions is None:
                log.warning("no partition metadata for topic %s", topic)
                continue
            numbers.update(partitions)
        tasks = assign_tasks(members, numbers)
        return {
            member: ConsumerProtocolMemberAssignment(
                cls.version,
                sorted(
                    (
                        topic,
                        [
                            p
                            for p in tasks[member]
                            if p in (cluster.partitions_for_topic(topic) or ())
                        ],
                    )
                    for topic in members[member].subscription
                ),
                b"",
            )
            for member in members
        }

    @classmethod
    def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(cls.version, list(topics), b"")

    @classmethod
    def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
        pass
