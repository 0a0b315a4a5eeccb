"""Replication settings against the session's single-node broker: asking for more
copies than there are brokers is one clear error at once, not a hang."""

from __future__ import annotations

import time

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.integration.streaming import ICPS
from tests.kafka_harness import Deployment

pytestmark = pytest.mark.broker


def test_more_copies_than_brokers_is_a_clear_error(deployment: Deployment) -> None:
    """SCORER_REPLICATION_FACTOR=3 on one broker: the publishing command and the worker
    exit 2 within seconds, saying the broker count and what to set; no topic is made."""
    deployment.extra_env["SCORER_REPLICATION_FACTOR"] = "3"
    started = time.monotonic()
    publish = deployment.run("icp", "publish", ICPS[0], check=False)
    took = time.monotonic() - started
    assert publish.returncode == 2, publish.stderr
    assert took < 20
    line = publish.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "SCORER_REPLICATION_FACTOR=3" in line and "1 live broker(s)" in line
    assert "SCORER_REPLICATION_FACTOR=1" in line
    worker = deployment.run_worker_to_exit(timeout=60)
    assert worker.returncode == 2
    assert "1 live broker(s)" in worker.stderr and "Traceback" not in worker.stderr


def test_min_insync_replicas_above_the_factor_is_refused(deployment: Deployment) -> None:
    """min.insync.replicas above the factor could never take a write: exit 2 and say so."""
    deployment.extra_env["SCORER_MIN_INSYNC_REPLICAS"] = "2"
    publish = deployment.run("icp", "publish", ICPS[0], check=False)
    assert publish.returncode == 2
    assert "SCORER_MIN_INSYNC_REPLICAS=2 is more than SCORER_REPLICATION_FACTOR=1" in (
        publish.stderr
    )


async def test_one_copy_works_on_one_broker(deployment: Deployment) -> None:
    """SCORER_REPLICATION_FACTOR=1 (what deploy/local and the tests set) creates every
    topic of the deployment, with one copy and min.insync.replicas=1."""
    deployment.run("icp", "publish", ICPS[0])
    admin = AIOKafkaAdminClient(bootstrap_servers=deployment.broker.bootstrap)
    await admin.start()
    try:
        names = [deployment.topic(n) for n in ("hot-accounts", "route-deliveries")]
        for description in await admin.describe_topics(names):
            assert {len(p["replicas"]) for p in description["partitions"]} == {1}
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        for response in await admin.describe_configs(resources):
            for *_, entries in response.resources:
                config = {entry[0]: entry[1] for entry in entries}
                assert config["min.insync.replicas"] == "1"
    finally:
        await admin.close()
