"""Replication settings: a production cluster's defaults, and acks=all everywhere."""

from __future__ import annotations

import pytest

from scorer.config import Settings
from scorer.errors import ConfigError
from scorer.kafka.client import producer_options
from scorer.kafka.topics import Topics, check_min_isr


def test_defaults_are_three_copies_and_two_in_sync() -> None:
    """Factor 3, min.insync.replicas 2: one broker may be down and writes stay safe."""
    fields = Settings.model_fields
    assert fields["replication_factor"].default == 3
    assert fields["min_insync_replicas"].default is None  # then min(2, factor)
    assert Settings(replication_factor=3, min_insync_replicas=None).min_isr == 2


def test_one_copy_means_min_isr_one_unless_set() -> None:
    """Factor 1 (a single broker) takes min ISR 1; an explicit value wins."""
    assert Settings(replication_factor=1, min_insync_replicas=None).min_isr == 1
    assert Settings(replication_factor=5, min_insync_replicas=3).min_isr == 3


def test_min_isr_above_the_factor_is_a_config_error() -> None:
    """A topic whose min ISR exceeds its copies could never take a write."""
    with pytest.raises(ConfigError, match="SCORER_MIN_INSYNC_REPLICAS=2 is more than"):
        check_min_isr(Settings(replication_factor=1, min_insync_replicas=2))


def test_every_created_topic_carries_min_isr() -> None:
    """Each topic's spec sets min.insync.replicas; the ICP and erasure topics have one
    partition (the erasure requests are ordered by their offsets)."""
    settings = Settings(topic_partitions=6, replication_factor=3, min_insync_replicas=None)
    topics = Topics.from_settings(settings)
    for name in topics.all():
        partitions, configs = topics.spec(name, settings)
        assert configs["min.insync.replicas"] == "2"
        single = (topics.icp, topics.erasures, topics.erasure_progress)
        assert partitions == (1 if name in single else 6)
    assert topics.spec(topics.deliveries, settings)[1]["cleanup.policy"] == "compact,delete"


def test_producers_wait_for_every_in_sync_replica() -> None:
    """The services' producers are idempotent with acks=all."""
    options = producer_options(Settings())
    assert options["acks"] == "all" and options["enable_idempotence"] is True


def test_dead_letters_and_scores_have_a_retention_from_settings() -> None:
    """Both DLQs keep a record SCORER_DLQ_RETENTION (7 days by default), account-scores
    SCORER_SCORES_RETENTION; the input topics keep the broker's default."""
    topics = Topics.from_settings(Settings())
    week = str(7 * 86400 * 1000)
    for name in (topics.dlq, topics.route_dlq, topics.scores):
        assert topics.spec(name, Settings())[1]["retention.ms"] == week
    assert "retention.ms" not in topics.spec(topics.visitor, Settings())[1]
    settings = Settings(dlq_retention="2d", scores_retention="36h")
    assert topics.spec(topics.route_dlq, settings)[1]["retention.ms"] == str(2 * 86400 * 1000)
    assert topics.spec(topics.scores, settings)[1]["retention.ms"] == str(36 * 3600 * 1000)
