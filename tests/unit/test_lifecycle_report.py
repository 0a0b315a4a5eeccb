"""The HTML reports open in a real headless browser with their charts drawn."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from scorer.cli import main

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _dump_dom(page: Path) -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is needed (make tools, or apt-get install -y chromium)")
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout


def test_backtest_and_review_reports_draw_their_charts(tmp_path: Path) -> None:
    """Sample → derive → backtest and review HTML: the browser's DOM holds bars and lines."""
    data = tmp_path / "sample"
    assert main(["icp", "sample", "-o", str(data), "--accounts", "1500"]) == 0
    proposed = tmp_path / "proposed.yaml"
    derive = ["icp", "derive", "--customers", str(data / "won.csv"), "--lost"]
    derive += [str(data / "lost.csv"), "--firmographics", str(data / "companies.jsonl")]
    assert main([*derive, "--min-support", "10", "-o", str(proposed)]) == 0
    html = tmp_path / "backtest.html"
    backtest = ["icp", "backtest", "--icp", str(data / "current-icp.yaml"), "--icp", str(proposed)]
    backtest += ["--events", str(data / "events.jsonl"), "--outcomes"]
    backtest += [str(data / "opportunities.csv"), "--firmographics", str(data / "companies.jsonl")]
    assert main([*backtest, "--html", str(html), "--json", str(tmp_path / "b.json")]) == 0
    dom = _dump_dom(html)
    assert dom.count("<svg") == 3
    assert dom.count('class="bar"') >= 8  # 4 tiers x 2 ICPs
    assert dom.count('class="line"') >= 6  # precision + recall per ICP, weekly per ICP
    assert "http://" not in dom.replace("http://www.w3.org/2000/svg", "")  # nothing fetched
    review_html = tmp_path / "review.html"
    review = ["icp", "review", "--icp", str(proposed), "--customers"]
    review += [str(data / "recent-won.csv"), "--firmographics", str(data / "companies.jsonl")]
    assert main([*review, "--min-support", "10", "--html", str(review_html)]) == 0
    dom = _dump_dom(review_html)
    assert dom.count("<svg") == 1 and 'class="bar"' in dom
    assert "proposed.yaml" in dom  # the diff is on the page
