"""Self-contained HTML pages for `backtest` and `review`: inline SVG, inline CSS,
no script and no network (a report is mailed around and opened offline)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape
from typing import Any

from scorer.lifecycle.charts import bar_chart, line_chart

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1180px; color: #111 }
h1 { font-size: 1.5rem } h2 { font-size: 1.15rem; margin-top: 2rem }
table { border-collapse: collapse; margin: .5rem 0 } td, th { padding: .25rem .6rem;
  border-bottom: 1px solid #e5e7eb; text-align: right } th:first-child, td:first-child
  { text-align: left } .charts { display: flex; flex-wrap: wrap; gap: 1rem }
pre { background: #f8fafc; padding: .75rem; overflow-x: auto } .add { color: #15803d }
.del { color: #b91c1c } .muted { color: #6b7280 }
"""


def page(title: str, body: Sequence[str]) -> str:
    """A whole HTML document around body fragments."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _pct(value: float) -> str:
    return f"{value:.1%}"


def backtest_summary_rows(result: dict[str, Any]) -> list[list[Any]]:
    """One row per measure, one column per ICP (side by side)."""
    icps = result["icps"]
    measures: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        ("ICP", lambda r: f"{r['icp']['id']} v{r['icp']['version']}"),
        ("alerts", lambda r: r["alerts"]),
        ("alerts per week", lambda r: r["alerts_per_week"]),
        ("accounts alerted", lambda r: r["accounts_alerted"]),
        ("precision", lambda r: _pct(r["precision"])),
        ("recall of won accounts", lambda r: _pct(r["recall"])),
        ("median days alert → opportunity", lambda r: r["median_days_to_opportunity"]),
        ("won accounts in history", lambda r: r["won_accounts"]),
        ("base win rate", lambda r: _pct(r["base_win_rate"])),
    ]
    return [[name, *(get(r) for r in icps)] for name, get in measures]


def backtest_html(result: dict[str, Any], title: str = "ICP backtest") -> str:
    """The backtest report: summary side by side, lift per tier, the threshold
    sweep, weekly alert volume, and each ICP's tier table."""
    icps = result["icps"]
    labels = [r["label"] for r in icps]
    events = result["events"]
    body = [
        f'<p class="muted">{events["lines"]:,} events over {events["accounts"]:,} accounts; '
        f"horizon {icps[0]['horizon_days']:g} days after the first alert. Precision: alerted "
        "accounts that opened an opportunity or won a deal within the horizon. Recall: won "
        "accounts alerted no later than their close.</p>"
        if icps
        else "<p>No ICP.</p>",
        "<h2>Side by side</h2>",
        table(["", *labels], backtest_summary_rows(result)),
        '<h2>Charts</h2><div class="charts">',
    ]
    if icps:
        tiers = [t["tier"] for t in icps[0]["tiers"]]
        body.append(
            bar_chart(
                "Lift of won accounts per tier (best tier reached)",
                tiers,
                {r["label"]: _by_tier(r, tiers) for r in icps},
            )
        )
        thresholds = [s["min_total"] for s in icps[0]["threshold_sweep"]]
        sweep: dict[str, list[float | None]] = {}
        for r in icps:
            sweep[f"{r['label']} precision"] = [s["precision"] for s in r["threshold_sweep"]]
            sweep[f"{r['label']} recall"] = [s["recall"] for s in r["threshold_sweep"]]
        body.append(
            line_chart(
                "Precision and recall across hot thresholds",
                thresholds,
                sweep,
                y_max=1.0,
                x_label="hot.min_total",
            )
        )
        weeks = max(len(r["weekly_alerts"]) for r in icps)
        body.append(
            line_chart(
                "Alerts per week",
                list(range(1, weeks + 1)),
                {r["label"]: [float(v) for v in r["weekly_alerts"]] for r in icps},
                y_format=".0f",
                x_label="week",
            )
        )
    body.append("</div>")
    for r in icps:
        body.append(f"<h2>{escape(r['label'])}: tiers</h2>")
        rows = [
            [t["tier"], t["accounts"], t["won"], _pct(t["win_rate"]), t["lift"]] for t in r["tiers"]
        ]
        body.append(table(["tier", "accounts", "won", "win rate", "lift"], rows))
        rows = [
            [s["min_total"], s["accounts_alerted"], _pct(s["precision"]), _pct(s["recall"])]
            for s in r["threshold_sweep"]
        ]
        body.append(f"<h2>{escape(r['label'])}: threshold sweep</h2>")
        body.append(table(["hot.min_total", "accounts alerted", "precision", "recall"], rows))
    return page(title, body)


def _by_tier(result: dict[str, Any], tiers: Sequence[str]) -> list[float]:
    lifts = {t["tier"]: t["lift"] for t in result["tiers"]}
    return [float(lifts.get(t, 0.0)) for t in tiers]


def backtest_text(result: dict[str, Any]) -> str:
    """The terminal summary: the side-by-side table as aligned text."""
    rows = [
        [str(c if not isinstance(c, float) else f"{c:,.2f}") for c in row]
        for row in ([["", *(r["label"] for r in result["icps"])], *backtest_summary_rows(result)])
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return (
        "\n".join(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in rows
        )
        + "\n"
    )
