"""Derivations written out: a valid ICP YAML whose comments carry the evidence,
and a markdown report of every value tested.

The YAML is written by hand (PyYAML drops comments) and then loaded back
through `scorer.icp.loader`, so a proposal that would not validate is never
written. Scalars go through `yaml.safe_dump`, which quotes what YAML would
otherwise misread (`NO` for Norway, `yes`, numbers as text).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from scorer.icp.loader import loads_icp
from scorer.lifecycle.derive import Derivation, Proposal, Value
from scorer.lifecycle.signals import Signal

SAMPLE_TEMPLATE = Path(__file__).resolve().parents[1] / "samples" / "midmarket-saas.yaml"
_TEMPLATE_KEYS = ("intent", "personas", "weights", "tiers", "hot", "exclude")


def template_parts(text: str | None = None) -> dict[str, Any]:
    """The non-fit sections of an ICP (intent, personas, weights, tiers, hot, exclude).

    A derived ICP proposes fit criteria only; the rest comes from the current
    ICP (`--template`) or, by default, the packaged mid-market sample.
    """
    raw = yaml.safe_load(text if text is not None else SAMPLE_TEMPLATE.read_text())
    loads_icp(text if text is not None else SAMPLE_TEMPLATE.read_text(), "template")
    return {key: raw[key] for key in _TEMPLATE_KEYS if key in raw}


def flow(value: Any) -> str:
    dumped: str = yaml.safe_dump(
        value, default_flow_style=True, sort_keys=False, width=1_000_000, allow_unicode=True
    )
    return dumped.strip().removesuffix("...").strip()


def criterion_lines(proposal: Proposal) -> list[str]:
    """A criterion and the comments giving its evidence and its parts'."""
    lines = [f"  # {proposal.field}: {proposal.evidence.summary()}"]
    if proposal.must_have:
        lines.append(
            f"  #   must_have: {proposal.evidence.won_share:.0%} of wins have it, "
            f"{proposal.evidence.other_share:.0%} of the others"
        )
    if len(proposal.parts) > 1:
        for part in proposal.parts:
            lines.append(f"  #   {part.label}: {part.evidence.summary()}")
    lines.append(f"  - {flow(proposal.criterion())}")
    return lines


def render_icp(
    derivation: Derivation,
    icp_id: str = "derived",
    version: int = 1,
    name: str | None = None,
    template: dict[str, Any] | None = None,
    header: str = "Proposed by `scorer icp derive`",
    signals: Sequence[Signal] = (),
) -> str:
    """The proposed ICP as YAML text, checked to load as a valid ICP."""
    options = derivation.options
    lines = [
        f"# {header} from {derivation.wins:,} won of {derivation.population:,} accounts "
        f"(base win rate {derivation.base_rate:.1%}).",
        f"# Kept: support >= {options.min_support}, lift >= {options.min_lift:g} and the "
        "lift's Wilson 95% interval above 1.",
        "# Lift = win rate with the value / base win rate. Review the evidence before use.",
        f"id: {flow(icp_id)}",
        f"version: {version}",
    ]
    if name:
        lines.append(f"name: {flow(name)}")
    lines.append("fit:")
    for proposal in derivation.proposals:
        lines.extend(criterion_lines(proposal))
    parts = dict(template if template is not None else template_parts())
    if signals:
        intent = dict(parts.pop("intent", None) or {})
        intent.pop("signals", None)
        lines.append("intent:")
        for key, value in intent.items():
            lines.append(f"  {key}: {flow(value)}")
        lines.append(
            "  # Signals from the engagement before won deals (lift = win rate of the"
            " accounts that showed it / base)."
        )
        lines.append("  signals:")
        for signal in signals:
            lines.append(f"    # {signal.label}: {signal.evidence.summary()}")
            lines.append(f"    - {flow(signal.rule())}")
    if parts:
        lines.append(yaml.safe_dump(parts, default_flow_style=None, sort_keys=False).rstrip())
    text = "\n".join(lines) + "\n"
    loads_icp(text, "derived ICP")  # never hand out a proposal that does not validate
    return text


def _row(value: Value, kept: bool) -> str:
    e = value.evidence
    low, high = e.interval
    mark = "kept" if kept else ""
    return (
        f"| {value.field} | {value.label} | {e.support} | {e.wins} | {e.win_rate:.1%} "
        f"| {e.lift:.2f} | {low:.2f}-{high:.2f} | {mark} |"
    )


def derivation_markdown(derivation: Derivation, limit: int = 40) -> str:
    """A markdown report: the proposal, then the best-supported values tested."""
    options = derivation.options
    out = [
        "# Derived ICP: evidence",
        "",
        f"{derivation.population:,} accounts, {derivation.wins:,} won "
        f"(base win rate {derivation.base_rate:.1%}); {len(derivation.values):,} values tested.",
    ]
    if derivation.missing_records:
        out.append(f"{derivation.missing_records:,} won/lost accounts had no company record.")
    out += ["", "## Proposed criteria", ""]
    if not derivation.proposals:
        out.append("None: no value met the keep rule. Lower --min-support or --min-lift?")
    out += ["| criterion | weight | support | win rate | lift (95%) |", "|---|---|---|---|---|"]
    for p in derivation.proposals:
        low, high = p.evidence.interval
        must = " (must have)" if p.must_have else ""
        out.append(
            f"| `{flow(p.criterion())}` | {p.weight}{must} | {p.evidence.support} "
            f"| {p.evidence.win_rate:.1%} | {p.evidence.lift:.2f} ({low:.2f}-{high:.2f}) |"
        )
    kept_keys = {(v.field, v.key) for p in derivation.proposals for v in p.parts}
    ranked = sorted(
        (v for v in derivation.values if v.evidence.support >= options.min_support),
        key=lambda v: (-v.evidence.interval[0], v.field, v.label),
    )[:limit]
    out += [
        "",
        f"## Values with support >= {options.min_support}, by lift lower bound (top {limit})",
        "",
        "| field | value | support | won | win rate | lift | 95% | |",
        "|---|---|---|---|---|---|---|---|",
    ]
    out += [_row(v, (v.field, v.key) in kept_keys) for v in ranked]
    return "\n".join(out) + "\n"
