"""SASL_SSL for real: a broker with a SCRAM-SHA-512 listener over TLS (certificates
made at start-up), the publishing commands and a worker using it, and a wrong
password refused with one clear line and a non-zero exit, never logged."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.streaming import ICPS, event_records, sample
from tests.kafka_harness import Broker, Deployment, start_broker


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    broker = start_broker(tmp_path_factory.mktemp("kafka-sasl"), sasl_ssl=True)
    yield broker
    broker.stop()


def secure_env(broker: Broker, password: str | None = None) -> dict[str, str]:
    user, real, cafile = broker.secrets()
    assert broker.sasl_ssl is not None
    return {
        "SCORER_BROKER": f"kafka://{broker.sasl_ssl}",
        "SCORER_SECURITY_PROTOCOL": "SASL_SSL",
        "SCORER_SASL_MECHANISM": "SCRAM-SHA-512",
        "SCORER_SASL_USERNAME": user,
        "SCORER_SASL_PASSWORD": password if password is not None else real,
        "SCORER_SSL_CAFILE": cafile,
    }


async def test_commands_and_worker_over_sasl_ssl(secure_broker: Broker, tmp_path: Path) -> None:
    """icp publish, firmographics load and a worker run over SASL_SSL; events scored
    through it come out as alerts."""
    deployment = Deployment(secure_broker, tmp_path, extra_env=secure_env(secure_broker))
    try:
        companies, events = sample(tmp_path, 200, 800, seed=41)
        for icp in ICPS:
            deployment.run("icp", "publish", icp)
        deployment.run("firmographics", "load", companies)
        worker = deployment.start_worker()
        worker.wait_ready(timeout=90)
        await deployment.produce(event_records(deployment, events))  # plaintext listener
        alerts = await deployment.documents("hot-accounts", until=lambda r: len(r) > 0)
        assert alerts and all(a["type"] == "hot_account" for a in alerts)
        password = secure_env(secure_broker)["SCORER_SASL_PASSWORD"]
        assert password not in worker.log()
    finally:
        deployment.stop_all()


def test_wrong_password_is_refused_clearly(secure_broker: Broker, tmp_path: Path) -> None:
    """A wrong password: the command and the worker each exit 1 with one line naming
    the authentication failure, no traceback, and the password appears nowhere."""
    wrong = "not-the-password-7f3a"
    deployment = Deployment(secure_broker, tmp_path, extra_env=secure_env(secure_broker, wrong))
    publish = deployment.run("icp", "publish", ICPS[0], check=False)
    assert publish.returncode == 1
    assert "authentication failed" in publish.stderr
    assert "Traceback" not in publish.stderr
    assert wrong not in publish.stdout + publish.stderr
    worker = deployment.run_worker_to_exit()
    assert worker.returncode == 1
    assert "authentication failed" in worker.stderr
    assert "Traceback" not in worker.stderr
    assert wrong not in worker.stdout + worker.stderr
