"""Retention as the README states it, read back from the broker's topic configs."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from scorer.config import Settings
from scorer.kafka.client import client_options
from scorer.kafka.topics import Topics, ensure_topics
from tests.kafka_harness import Deployment

pytestmark = pytest.mark.broker
DAY_MS = 86400 * 1000


async def test_created_topics_carry_the_documented_retention(deployment: Deployment) -> None:
    """The DLQs keep 7 days by default (SCORER_DLQ_RETENTION sets it), account-scores
    SCORER_SCORES_RETENTION, route-deliveries 7 days compacted, the changelogs compacted."""
    settings = Settings(
        broker=f"kafka://{deployment.broker.bootstrap}",
        topic_prefix=deployment.prefix,
        app_id=deployment.name,
        replication_factor=1,
        scores_retention="3d",
    )
    topics = Topics.from_settings(settings)
    await ensure_topics(settings, topics)
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        names = [topics.dlq, topics.route_dlq, topics.scores, topics.deliveries, topics.changelog]
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )
    finally:
        await admin.close()
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for _code, _message, _type, name, entries in response.resources:
            configs[name] = {entry[0]: entry[1] for entry in entries}
    assert configs[topics.dlq]["retention.ms"] == str(7 * DAY_MS)
    assert configs[topics.route_dlq]["retention.ms"] == str(7 * DAY_MS)
    assert configs[topics.dlq]["cleanup.policy"] == "delete"
    assert configs[topics.scores]["retention.ms"] == str(3 * DAY_MS)
    assert configs[topics.deliveries]["cleanup.policy"] == "compact,delete"
    assert configs[topics.deliveries]["retention.ms"] == str(7 * DAY_MS)
    assert configs[topics.changelog]["cleanup.policy"] == "compact"
