"""`scorer score`, `scorer icp validate` and `scorer schemas` through the installed command."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from scorer import synthetic
from scorer.models import AccountScore, HotAccountEvent

ROOT = Path(__file__).parents[2]
SAMPLES = ROOT / "scorer" / "samples"
ICPS = [SAMPLES / "midmarket-saas.yaml", SAMPLES / "enterprise-fintech.yaml"]
SCORER = shutil.which("scorer", path=str(Path(sys.executable).parent)) or "scorer"


def run(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([SCORER, *map(str, args)], input=stdin, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data")
    records = list(synthetic.companies(300))
    (folder / "companies.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    events = synthetic.events(4000, [r["domain"] for r in records[:150]])
    (folder / "events.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return {
        "companies": folder / "companies.jsonl",
        "events": folder / "events.jsonl",
        "dir": folder,
    }


def score_args(data: dict[str, Path], *extra: str | Path) -> list[str | Path]:
    icps = [a for p in ICPS for a in ("--icp", p)]
    return ["score", *icps, "--firmographics", data["companies"], *extra]


def lines(out: bytes) -> list[dict]:
    return [orjson.loads(line) for line in out.splitlines()]


def test_score_emits_valid_alerts(data: dict[str, Path]) -> None:
    """Alerts are hot_account documents for both ICPs, and the run exits 0."""
    result = run(*score_args(data, data["events"]))
    assert result.returncode == 0, result.stderr
    alerts = lines(result.stdout)
    assert alerts, "the sample should produce alerts"
    for doc in alerts:
        HotAccountEvent.model_validate(doc)
    assert {a["icp"]["id"] for a in alerts} == {"midmarket-saas", "enterprise-fintech"}
    assert len({a["alert_id"] for a in alerts}) == len(alerts)
    assert b"alerts" in result.stderr  # the closing summary


def test_stdin_gives_the_same_alerts(data: dict[str, Path]) -> None:
    """`-` reads events from stdin; the alert ids equal those of the file run."""
    from_file = lines(run(*score_args(data, data["events"])).stdout)
    from_stdin = lines(run(*score_args(data, "-"), stdin=data["events"].read_bytes()).stdout)
    assert [a["alert_id"] for a in from_stdin] == [a["alert_id"] for a in from_file]


def test_emit_scores_gives_one_record_per_resolved_event_and_icp(data: dict[str, Path]) -> None:
    """--emit scores writes an account_score for every scored event under every ICP."""
    result = run(*score_args(data, "--emit", "scores", data["events"]))
    docs = lines(result.stdout)
    for doc in docs[:200]:
        AccountScore.model_validate(doc)
    resolved = int(re.search(rb"([\d,]+) scored", result.stderr).group(1).replace(b",", b""))
    assert len(docs) == 2 * resolved


def _csv_list(items: list[str]) -> str:
    """A list cell: `a;b`, `a;` for one item, `;` for none (empty means unknown)."""
    return ";".join(items) if len(items) > 1 else (items[0] + ";" if items else ";")


def test_csv_firmographics_score_like_jsonl(data: dict[str, Path], tmp_path: Path) -> None:
    """The same companies as CSV give the same alerts as JSON lines."""
    plain = [
        "domain",
        "name",
        "industry",
        "employees",
        "annual_revenue_usd",
        "country",
        "tech_stack",
        "business_model",
    ]
    sourced = ["industry", "employees", "country", "tech_stack"]
    header = [*plain, "funding.last_round_at"] + [
        f"sources.{f}.{attr}" for f in sourced for attr in ("source", "confidence")
    ]
    rows = [",".join(header)]
    for line in data["companies"].read_bytes().splitlines():
        r = orjson.loads(line)
        cells = [(_csv_list(r[f]) if f == "tech_stack" else r[f]) if f in r else "" for f in plain]
        cells.append(r.get("funding", {}).get("last_round_at", ""))
        src = r.get("sources", {})
        cells += [
            src.get(f, {}).get(attr, "") for f in sourced for attr in ("source", "confidence")
        ]
        rows.append(",".join(str(c) for c in cells))
    csv_path = tmp_path / "companies.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    icps = [a for p in ICPS for a in ("--icp", p)]
    from_csv = run("score", *icps, "--firmographics", csv_path, data["events"])
    from_jsonl = run(*score_args(data, data["events"]))
    assert from_csv.returncode == 0, from_csv.stderr
    strip = lambda docs: [{**d, "scored_at": None} for d in docs]  # noqa: E731
    assert strip(lines(from_csv.stdout)) == strip(lines(from_jsonl.stdout))


def test_bad_lines_are_reported_and_skipped(data: dict[str, Path], tmp_path: Path) -> None:
    """A bad line is `line N: why` on stderr without payload text; the rest is scored; exit 0."""
    good = data["events"].read_bytes().splitlines()
    secret = orjson.dumps(
        {
            "event_id": "x",
            "type": "lead_created",
            "occurred_at": "2026-11-01T00:00:00Z",
            "email": "pat@secret.example",
        }
    )
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join([good[0], b"{oops", secret, *good[1:]]) + b"\n")
    result = run(*score_args(data, events))
    assert result.returncode == 0
    errors = result.stderr.decode()
    assert "line 2: invalid_json" in errors and "line 3: schema: lead_id: required" in errors
    assert "secret" not in errors and "oops" not in errors
    assert [a["alert_id"] for a in lines(result.stdout)] == [
        a["alert_id"] for a in lines(run(*score_args(data, data["events"])).stdout)
    ]


def test_strict_stops_at_the_first_bad_line(data: dict[str, Path], tmp_path: Path) -> None:
    """--strict: exit 1 at the first bad line, nothing after it scored."""
    good = data["events"].read_bytes().splitlines()
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join([*good[:2000], b"[]", *good[2000:]]) + b"\n")
    result = run(*score_args(data, "--strict", events))
    assert result.returncode == 1
    assert result.stderr.decode().strip().endswith("line 2001: schema: expected a JSON object")
    full = lines(run(*score_args(data, data["events"])).stdout)
    assert 0 < len(lines(result.stdout)) < len(full)


def test_output_streams_before_input_ends(data: dict[str, Path]) -> None:
    """Alerts come out while stdin is still open: the input is never read whole first."""
    proc = subprocess.Popen(
        [SCORER, *map(str, score_args(data, "-"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin and proc.stdout
    try:
        # ~27 alerts of ~1.5 KB overflow the 8 KB stdout buffer long before the end.
        proc.stdin.write(data["events"].read_bytes())
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "no output within 30 s while stdin stayed open"
        assert orjson.loads(proc.stdout.readline())["type"] == "hot_account"
        assert proc.poll() is None  # still waiting for more input
    finally:
        proc.stdin.close()
        proc.stdout.read()
        proc.stdout.close()
        proc.wait(timeout=60)
    assert proc.returncode == 0


def test_progress_line_on_a_terminal(data: dict[str, Path]) -> None:
    """With stderr on a terminal, a progress line counts events and alerts."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [SCORER, *map(str, score_args(data, data["events"]))],
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    text = b"".join(chunks).decode()
    assert "4,000 events" in text and "/s" in text and "alerts" in text


def test_icp_validate(tmp_path: Path) -> None:
    """validate: exit 0 and a summary for good files, exit 1 with key-named problems for bad."""
    ok = run("icp", "validate", *ICPS)
    assert ok.returncode == 0 and ok.stdout.count(b": ok (") == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nversion: 1\nfit:\n  - {field: employees, between: [10, 5], weigth: 2}\n")
    result = run("icp", "validate", bad)
    assert result.returncode == 1
    assert b"fit[0].weigth: unknown key" in result.stderr


def test_score_with_invalid_icp_exits_1(data: dict[str, Path], tmp_path: Path) -> None:
    """`score` refuses to start with an invalid ICP, naming the key."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nversion: 0\nfit: [{field: a, eq: 1}]\n")
    result = run("score", "--icp", bad, data["events"])
    assert result.returncode == 1 and b"version:" in result.stderr


def test_missing_events_file_is_a_usage_error(data: dict[str, Path]) -> None:
    """A missing events file: exit 2 with the path and why, no traceback."""
    result = run(*score_args(data, data["dir"] / "nope.jsonl"))
    assert result.returncode == 2 and b"nope.jsonl: cannot read" in result.stderr
    assert b"Traceback" not in result.stderr


def test_schemas_check_detects_drift(tmp_path: Path) -> None:
    """`scorer schemas --check` passes on the repo and fails on a stale folder."""
    assert run("schemas", "--check", "--out", ROOT / "schemas").returncode == 0
    assert run("schemas", "--out", tmp_path).returncode == 0
    (tmp_path / "icp.schema.json").write_text("{}\n")
    assert run("schemas", "--check", "--out", tmp_path).returncode == 1


def test_score_applies_an_erasures_file(tmp_path: Path) -> None:
    """`--erasures`: a lead's events up to the request are dropped as erased wherever
    they come, the summary counts them, and no later output names the lead."""
    from scorer.scoring.erasure import LEAD, new_request

    def lead(n: int, day: int) -> dict:
        return {
            "event_id": f"crm-{n}",
            "type": "lead_created",
            "occurred_at": f"2026-11-{day:02d}T10:00:00Z",
            "lead_id": "crm-lead-5150",
            "email": "pat@acme.example",
            "title": "VP Sales",
        }

    view = {
        "event_id": "v-1",
        "type": "page_view",
        "occurred_at": "2026-11-12T10:00:00Z",
        "company_domain": "acme.example",
    }
    events = [lead(1, 2), view, lead(2, 8), lead(3, 20)]  # crm-2 is late: before the request
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    request = new_request("r1", LEAD, "crm-lead-5150", 1794355200.0)  # 2026-11-11
    erasures = tmp_path / "erasures.jsonl"
    erasures.write_bytes(request.to_json() + b"\n")
    icps = [a for p in ICPS for a in ("--icp", p)]
    plain = run("score", *icps, "--emit", "scores", path)
    erased = run("score", *icps, "--emit", "scores", "--erasures", erasures, path)
    assert plain.returncode == erased.returncode == 0, erased.stderr
    assert {d["trigger"]["event_id"] for d in lines(plain.stdout)} == {
        "crm-1",
        "v-1",
        "crm-2",
        "crm-3",
    }
    # crm-2 occurred before the request and is read after it: erased. crm-3 comes
    # after the request: a later event of the lead, scored as any other.
    triggers = [d["trigger"]["event_id"] for d in lines(erased.stdout)]
    assert triggers == ["crm-1", "crm-1", "v-1", "v-1", "crm-3", "crm-3"]
    assert b"1 erased" in erased.stderr
