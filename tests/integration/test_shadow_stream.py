"""Shadow ICPs on the stream: would-be alerts on account-scores equal `scorer score`'s,
hot-accounts holds only the active ICP's alerts, and `scorer icp promote` goes live."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import yaml

from tests.integration.streaming import (
    ICPS,
    batch_alerts,
    comparable,
    processing_order,
    resolved_ids,
    sample,
    samples,
    scored_stream,
    setup_deployment,
    total,
)
from tests.kafka_harness import Deployment


def shadow_copy(tmp: Path) -> Path:
    """midmarket-saas as a shadow candidate with its own id."""
    document = yaml.safe_load(ICPS[0].read_text())
    document.update({"id": "midmarket-next", "mode": "shadow", "version": 1})
    path = tmp / "midmarket-next.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


async def test_shadow_icp_stream_equals_batch_and_promote_makes_it_active(
    deployment: Deployment, tmp_path: Path
) -> None:
    """A shadow ICP's would-be alerts reach account-scores (marked shadow), exactly as
    `scorer score` gives them; none reach hot-accounts; they are counted; then
    `scorer icp promote --replace` publishes it active as the next version."""
    companies, events = sample(tmp_path, 400, 3000)
    candidate = shadow_copy(tmp_path)
    icps = [ICPS[0], candidate]
    setup_deployment(deployment, companies, icps)
    worker, records, alerts = await scored_stream(deployment, events)
    assert len(records) == 2 * len(resolved_ids(events))

    batch = batch_alerts(tmp_path, companies, processing_order(records, events), icps)
    batch_shadow = [d for d in batch if d.get("shadow")]
    batch_active = [d for d in batch if not d.get("shadow")]
    stream_shadow = [d for d in records if d["type"] == "hot_account"]
    assert batch_shadow and batch_active
    assert all(d["shadow"] and d["icp"]["id"] == "midmarket-next" for d in stream_shadow)
    assert sorted(map(comparable, stream_shadow)) == sorted(map(comparable, batch_shadow))
    assert sorted(map(comparable, alerts)) == sorted(map(comparable, batch_active))
    assert all(a["icp"]["id"] == "midmarket-saas" for a in alerts)
    metrics = samples(worker.get("/metrics").decode())
    counted = total(metrics, "scorer_shadow_alerts_total", icp="midmarket-next")
    assert counted == len(stream_shadow)

    result = deployment.run("icp", "promote", "midmarket-next", "--replace", "midmarket-saas")
    assert result.stdout.strip() == (
        "promoted midmarket-next v1 (shadow) -> midmarket-saas v4 (active), "
        "replacing midmarket-saas v3"
    )
    icps = await deployment.consume("icp-profiles", idle=2, timeout=30)
    latest = {r.key: r.value for r in icps}
    assert latest[b"midmarket-next"] is None  # the candidate is deleted
    promoted = orjson.loads(latest[b"midmarket-saas"])
    assert (promoted["version"], promoted["mode"]) == (4, "active")
    for _ in range(100):
        if "ICP midmarket-saas v4 active" in worker.log():
            break
        await asyncio.sleep(0.2)
    assert "ICP midmarket-saas v4 active" in worker.log()
    again = deployment.run("icp", "promote", "midmarket-saas", check=False)
    assert again.returncode == 2 and "already active" in again.stderr
