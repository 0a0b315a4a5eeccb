"""Shadow ICPs on the stream: would-be alerts on account-scores equal `scorer score`'s,
hot-accounts holds only the active ICP's alerts, and `scorer icp promote` goes live."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import orjson
import yaml

from tests.integration.streaming import (
    ICPS,
    comparable,
    event_records,
    processing_order,
    resolved_ids,
    sample,
)
from tests.kafka_harness import SCORER, Deployment


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
    for icp in (ICPS[0], candidate):
        deployment.run("icp", "publish", icp)
    deployment.run("firmographics", "load", companies)
    await deployment.produce(event_records(deployment, events))
    worker = deployment.start_worker(SCORER_EMIT_SCORES="true")
    worker.wait_ready()
    expected = 2 * len(resolved_ids(events))
    records = await deployment.documents(
        "account-scores", until=lambda r: len(r) >= expected, timeout=120
    )
    assert len(records) == expected
    alerts = await deployment.documents("hot-accounts", idle=3, timeout=60)

    replay = tmp_path / "replay.jsonl"
    ordered = processing_order(records, events)
    replay.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in ordered))
    out = subprocess.run(
        [SCORER, "score", "--quiet", "--icp", str(ICPS[0]), "--icp", str(candidate),
         "--firmographics", str(companies), str(replay)],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    batch = [orjson.loads(line) for line in out.splitlines()]
    batch_shadow = [d for d in batch if d.get("shadow")]
    batch_active = [d for d in batch if not d.get("shadow")]
    stream_shadow = [d for d in records if d["type"] == "hot_account"]
    assert batch_shadow and batch_active
    assert all(d["shadow"] and d["icp"]["id"] == "midmarket-next" for d in stream_shadow)
    assert sorted(map(comparable, stream_shadow)) == sorted(map(comparable, batch_shadow))
    assert sorted(map(comparable, alerts)) == sorted(map(comparable, batch_active))
    assert all(a["icp"]["id"] == "midmarket-saas" for a in alerts)
    metrics = worker.get("/metrics").decode()
    counted = sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith('scorer_shadow_alerts_total{icp="midmarket-next"')
    )
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
