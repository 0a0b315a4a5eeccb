"""`scorer icp review`: is the active ICP still who buys? (pure + its report).

Three views of a recent quarter of won customers:
- drift: the population stability index of each attribute of the recent
  wins against a baseline (earlier wins, or the whole firmographics file);
- the active ICP's criteria: their lift among recent outcomes, and whether
  it still holds (interval above 1) or was lost;
- a proposal: `derive` on the recent outcomes, written as the next version
  of the ICP (its intent, tiers and hot rule kept), and a unified diff
  against the active ICP written the same way, so only real changes show.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any

from scorer.icp.compiled import compile_icp, judge, lookup
from scorer.icp.document import ICPDocument
from scorer.lifecycle.charts import bar_chart
from scorer.lifecycle.derive import (
    DEFAULT_OPTIONS,
    RECENCY,
    Company,
    Derivation,
    DeriveOptions,
    derive,
    field_kinds,
    value_keys,
)
from scorer.lifecycle.evidence import Evidence, psi, psi_label
from scorer.lifecycle.render import flow, render_icp, template_parts
from scorer.lifecycle.report import page, table
from scorer.timefmt import format_epoch

DAY = 86400.0
UNKNOWN = "(unknown)"


@dataclass(frozen=True, slots=True)
class Drift:
    field: str
    psi: float
    bins: int

    @property
    def label(self) -> str:
        return psi_label(self.psi)


@dataclass(frozen=True, slots=True)
class CriterionCheck:
    criterion: str  # the criterion as a flow mapping
    evidence: Evidence
    status: str  # holds / weakened / lost


@dataclass
class Review:
    drift: list[Drift] = field(default_factory=list)
    checks: list[CriterionCheck] = field(default_factory=list)
    derivation: Derivation | None = None
    active_text: str = ""
    proposed_text: str = ""
    diff: str = ""
    since: dict[str, Any] | None = None  # alerts since the last version, when history is given


def drift(recent: Iterable[Company], baseline: Iterable[Company], as_of: float) -> list[Drift]:
    """PSI per attribute (categories, log bands, list items; unknown is a bin of its own)."""
    recent, baseline = list(recent), list(baseline)
    kinds = {f: k for f, k in field_kinds([*recent, *baseline]).items() if k != RECENCY}

    def counts(records: list[Company]) -> dict[str, Counter[Any]]:
        out: dict[str, Counter[Any]] = {name: Counter() for name in kinds}
        for record in records:
            seen = set()
            for name, key in value_keys(record, kinds, as_of):
                out[name][key] += 1
                seen.add(name)
            for name in kinds.keys() - seen:
                out[name][UNKNOWN] += 1
        return out

    now, then = counts(recent), counts(baseline)
    result = []
    for name in sorted(kinds):
        bins = sorted(now[name].keys() | then[name].keys(), key=str)
        index = psi([now[name][b] for b in bins], [then[name][b] for b in bins])
        result.append(Drift(name, index, len(bins)))
    return sorted(result, key=lambda d: (-d.psi, d.field))


def _plain(criterion: dict[str, Any]) -> dict[str, Any]:
    """Whole floats as ints, so `weight: 3.0` and `weight: 3` do not differ in a diff."""

    def whole(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return [whole(v) for v in value] if isinstance(value, list | tuple) else value

    return {k: whole(v) for k, v in criterion.items()}


def check_criteria(
    active: ICPDocument,
    companies: Mapping[str, Company],
    domains: list[str],
    won: set[str],
    as_of: float,
    min_lift: float,
) -> list[CriterionCheck]:
    """Each criterion's lift among the review's population."""
    compiled = compile_icp(active)
    population_wins = sum(1 for d in domains if d in won)
    checks = []
    for source, c in zip(active.fit, compiled.criteria, strict=True):
        support = wins = 0
        for domain in domains:
            value = lookup(companies[domain], c.path)
            if judge(c, value, as_of):  # unknown (None) does not count as a hit
                support += 1
                wins += domain in won
        evidence = Evidence(support, wins, len(domains), population_wins)
        low = evidence.interval[0]
        status = "holds" if low > 1 and evidence.lift >= min_lift else "weakened"
        if evidence.interval[1] < 1 or not support:
            status = "lost"
        text = flow(_plain(source.model_dump(by_alias=True, exclude_defaults=True)))
        checks.append(CriterionCheck(text, evidence, status))
    return checks


def canonical_active(active: ICPDocument, template: dict[str, Any], derivation: Derivation) -> str:
    """The active ICP written the way `render_icp` writes a proposal, for a clean diff."""
    proposed = render_icp(
        derivation, active.id, active.version + 1, active.name, template, header="Reviewed"
    )
    head, _, _ = proposed.partition("\nfit:\n")
    head = head.replace(f"version: {active.version + 1}", f"version: {active.version}")
    lines = [head, "fit:"]
    for c in active.fit:
        lines.append(f"  - {flow(_plain(c.model_dump(by_alias=True, exclude_defaults=True)))}")
    rest = proposed.partition("\nfit:\n")[2].splitlines()
    start = next((i for i, line in enumerate(rest) if not line.startswith("  ")), len(rest))
    tail = rest[start:]
    return "\n".join([*lines, *tail]) + "\n"


def review(
    active: ICPDocument,
    active_text: str,
    companies: Mapping[str, Company],
    recent_won: Iterable[str],
    recent_lost: Iterable[str] | None = None,
    baseline_won: Iterable[str] | None = None,
    options: DeriveOptions = DEFAULT_OPTIONS,
    as_of: float | None = None,
) -> Review:
    """Drift, criteria checks and the proposed next version of an ICP."""
    won = {d for d in recent_won if d in companies}
    lost = {d for d in recent_lost or () if d in companies} - won
    derivation = derive(companies, won, lost or None, options, as_of)
    anchor = as_of if as_of is not None else options.as_of or 0.0
    baseline = [companies[d] for d in baseline_won or () if d in companies] or list(
        companies.values()
    )
    domains = sorted(won | lost) if lost else sorted(companies)
    template = template_parts(active_text)
    proposed = render_icp(
        derivation, active.id, active.version + 1, active.name, template, header="Reviewed"
    )
    before = canonical_active(active, template, derivation)
    proposed_fit = proposed.partition("\nfit:\n")[2]
    after = before.partition("\nfit:\n")[0].replace(
        f"version: {active.version}", f"version: {active.version + 1}"
    )
    after = after + "\nfit:\n" + proposed_fit
    diff = "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            [line for line in after.splitlines(keepends=True) if not line.startswith("  #")],
            "active.yaml",
            "proposed.yaml",
        )
    )
    return Review(
        drift=drift([companies[d] for d in sorted(won)], baseline, anchor),
        checks=check_criteria(active, companies, domains, won, anchor, options.min_lift),
        derivation=derivation,
        active_text=before,
        proposed_text=proposed,
        diff=diff,
    )


def review_text(result: Review) -> str:
    """The terminal summary."""
    out = ["Drift of recent wins (population stability index):"]
    out += [f"  {d.field:<28} {d.psi:6.3f}  {d.label}" for d in result.drift]
    out.append("Active criteria among recent outcomes:")
    for c in result.checks:
        out.append(f"  {c.status:<9} {c.criterion}")
        out.append(f"            {c.evidence.summary()}")
    if result.since is not None:
        s = result.since
        when = format_epoch(s["since"])[:10]
        out.append(
            f"Alerts since {when}: {s['alerts']:,} alerts, {s['accounts_alerted']:,} accounts, "
            f"precision {s['precision']:.1%}"
        )
    out.append("Proposed change (unified diff):")
    out.append(result.diff.rstrip() or "  (none)")
    return "\n".join(out) + "\n"


def review_html(result: Review, title: str = "ICP review") -> str:
    """The review page: PSI chart and table, criteria table, the proposed diff."""
    chart = bar_chart(
        "Population stability index of recent wins, per attribute",
        [d.field.split(".")[-1] for d in result.drift],
        {"PSI": [d.psi for d in result.drift]},
        y_format=".2f",
    )
    diff_lines = []
    for line in result.diff.splitlines():
        css = "add" if line.startswith("+") else "del" if line.startswith("-") else ""
        diff_lines.append(f'<span class="{css}">{escape(line)}</span>')
    body = [
        "<h2>Drift</h2>",
        '<div class="charts">' + chart + "</div>",
        table(
            ["attribute", "PSI", "bins", ""],
            [[d.field, d.psi, d.bins, d.label] for d in result.drift],
        ),
        "<h2>Active criteria</h2>",
        table(
            ["criterion", "status", "support", "win rate", "lift", "95%"],
            [
                [
                    c.criterion,
                    c.status,
                    c.evidence.support,
                    f"{c.evidence.win_rate:.1%}",
                    c.evidence.lift,
                    "{:.2f}-{:.2f}".format(*c.evidence.interval),
                ]
                for c in result.checks
            ],
        ),
        *(
            [
                "<h2>Alerts since the last version</h2>",
                table(
                    ["since", "alerts", "accounts alerted", "precision"],
                    [
                        [
                            format_epoch(result.since["since"])[:10],
                            result.since["alerts"],
                            result.since["accounts_alerted"],
                            f"{result.since['precision']:.1%}",
                        ]
                    ],
                ),
            ]
            if result.since is not None
            else []
        ),
        "<h2>Proposed ICP (diff)</h2>",
        "<pre>" + "\n".join(diff_lines) + "</pre>",
        "<h2>Proposed ICP with evidence</h2>",
        f"<pre>{escape(result.proposed_text)}</pre>",
    ]
    return page(title, body)
