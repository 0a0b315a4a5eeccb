"""`scorer icp derive`: fit criteria proposed from won and lost accounts (pure).

Every attribute of the company records is cut into values: categorical
values, fixed log bands of numeric fields (1, 2, 5, 10, 20, 50, ...), items
of list fields, and funding-style dates as "within N days of the as-of date".
Each value gets its support, win rate and lift with a Wilson 95 % interval
(`evidence.py`). A value is kept when its support reaches `min_support`, the
interval's lower bound is above 1 and the lift reaches `min_lift` (a floor on
the effect, so that one of the many values tested cannot get in on noise
alone). Kept values of one field merge into one criterion (`in`,
`contains_any`, the widest contiguous run of bands as `between`, the best
recency as `within_days`), whose evidence is counted again as a whole.
Weights scale log2 lift to 1..5, the strongest criterion getting 5. Sorted
everywhere, so the same input gives the same proposal.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scorer.icp.compiled import lookup
from scorer.lifecycle.evidence import Evidence

DAY = 86400.0
CATEGORICAL = "categorical"
NUMERIC = "numeric"
LIST = "list"
RECENCY = "recency"
RECENCY_DAYS = (90, 180, 365, 730)
BAND_EDGES = tuple(m * 10.0**e for e in range(14) for m in (1, 2, 5))
_SKIPPED = frozenset({"domain", "name", "sources"})
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")

Company = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DeriveOptions:
    """Thresholds of a derivation; the defaults suit a few hundred closed deals."""

    min_support: int = 30
    min_lift: float = 1.25
    must_have_won_share: float = 0.95
    must_have_max_other_share: float = 0.2
    max_categories: int = 50
    as_of: float | None = None  # recency reference; default: the latest outcome date


DEFAULT_OPTIONS = DeriveOptions()


def kept(e: Evidence, options: DeriveOptions) -> bool:
    """The keep rule: enough support, enough lift, and the lift's interval above 1."""
    return e.support >= options.min_support and e.interval[0] > 1.0 and e.lift >= options.min_lift


@dataclass(frozen=True, slots=True)
class Value:
    """One value of one field: a category, a band, a list item or a recency."""

    field: str
    kind: str
    key: Any  # casefolded category / band index / casefolded item / days
    label: str
    evidence: Evidence

    def qualifies(self, options: DeriveOptions) -> bool:
        return kept(self.evidence, options)


@dataclass(frozen=True, slots=True)
class Proposal:
    """One proposed fit criterion and the values it was built from."""

    field: str
    operator: str
    operand: Any
    weight: int
    must_have: bool
    evidence: Evidence
    parts: tuple[Value, ...]

    def criterion(self) -> dict[str, Any]:
        """The criterion as it goes into the ICP document."""
        out: dict[str, Any] = {"field": self.field, self.operator: self.operand}
        out["weight"] = self.weight
        if self.must_have:
            out["must_have"] = True
        return out


@dataclass
class Derivation:
    """What `derive` found: the population, every value, the proposals."""

    population: int
    wins: int
    options: DeriveOptions
    values: list[Value] = field(default_factory=list)
    proposals: list[Proposal] = field(default_factory=list)
    missing_records: int = 0  # won/lost accounts without a company record

    @property
    def base_rate(self) -> float:
        return self.wins / self.population if self.population else 0.0


def band_of(number: float) -> int:
    """Index of the log band [BAND_EDGES[i], BAND_EDGES[i + 1]) holding a number (-1 below 1)."""
    if number < 1.0:
        return -1
    low, high = 0, len(BAND_EDGES) - 1
    while low < high:  # the last edge <= number
        middle = (low + high + 1) // 2
        if BAND_EDGES[middle] <= number:
            low = middle
        else:
            high = middle - 1
    return low


def _band_label(index: int) -> str:
    if index < 0:
        return "< 1"
    return f"{_short(BAND_EDGES[index])}-{_short(BAND_EDGES[index + 1])}"


def _short(number: float) -> str:
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if number >= size:
            return f"{number / size:g}{suffix}"
    return f"{number:g}"


def flatten(record: Company, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """(dotted field, value) of every leaf of a company record but its identity and sources."""
    for key, value in record.items():
        if not prefix and key in _SKIPPED:
            continue
        name = prefix + key
        if isinstance(value, Mapping):
            yield from flatten(value, name + ".")
        elif value is not None:
            yield name, value


def kind_of(value: Any) -> str | None:
    """How a value is cut into values; None for what is not used (booleans, objects)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, list):
        return LIST
    if isinstance(value, int | float):
        return NUMERIC
    if isinstance(value, str):
        return RECENCY if _DATE.match(value) else CATEGORICAL
    return None


def field_kinds(records: Iterable[Company]) -> dict[str, str]:
    """Each field's kind: the most common kind among its values (ties: sorted first)."""
    seen: dict[str, Counter[str]] = defaultdict(Counter)
    for record in records:
        for name, value in flatten(record):
            kind = kind_of(value)
            if kind is not None:
                seen[name][kind] += 1
    return {
        name: min(counts.items(), key=lambda item: (-item[1], item[0]))[0]
        for name, counts in sorted(seen.items())
    }


def value_keys(record: Company, kinds: Mapping[str, str], as_of: float) -> list[tuple[str, Any]]:
    """Every (field, key) a record has: its category, band, items and recencies."""
    from scorer.timefmt import parse_record_time

    keys: list[tuple[str, Any]] = []
    for name, value in flatten(record):
        kind = kinds.get(name)
        if kind is None or kind_of(value) != kind:
            continue
        if kind == CATEGORICAL:
            keys.append((name, value.casefold()))
        elif kind == NUMERIC:
            keys.append((name, band_of(float(value))))
        elif kind == LIST:
            items = {x.casefold() for x in value if isinstance(x, str)}
            keys.extend((name, item) for item in sorted(items))
        else:
            stamp = parse_record_time(value)
            if stamp is None:
                continue
            age = (as_of - stamp) / DAY
            keys.extend((name, days) for days in RECENCY_DAYS if 0 <= age <= days)
    return keys


def _spellings(records: Iterable[Company], kinds: Mapping[str, str]) -> dict[tuple[str, str], str]:
    """The most common spelling of each casefolded category or item."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for record in records:
        for name, value in flatten(record):
            kind = kinds.get(name)
            if kind == CATEGORICAL and isinstance(value, str):
                counts[(name, value.casefold(), value)] += 1
            elif kind == LIST and isinstance(value, list):
                counts.update((name, x.casefold(), x) for x in value if isinstance(x, str))
    best: dict[tuple[str, str], tuple[int, str]] = {}
    for (name, folded, spelling), n in counts.items():
        current = best.get((name, folded))
        if current is None or (-n, spelling) < (-current[0], current[1]):
            best[(name, folded)] = (n, spelling)
    return {key: spelling for key, (_, spelling) in best.items()}


def derive(
    companies: Mapping[str, Company],
    won: Iterable[str],
    lost: Iterable[str] | None = None,
    options: DeriveOptions = DEFAULT_OPTIONS,
    as_of: float | None = None,
) -> Derivation:
    """Propose fit criteria from won (and lost) accounts.

    Population: the won and lost accounts that have a company record; without
    lost accounts, every company record (won against the rest of the market).
    `as_of` (or `options.as_of`) anchors recency values; without either,
    recency is measured from the newest date found in the records.
    """
    won_set = set(won)
    lost_set = (set(lost) - won_set) if lost is not None else set()
    if lost_set:
        members = sorted(won_set | lost_set)
        missing = sum(1 for d in members if d not in companies)
        domains = [d for d in members if d in companies]
    else:
        domains = sorted(companies)
        missing = sum(1 for d in won_set if d not in companies)
    records = [companies[d] for d in domains]
    wins_mask = [d in won_set for d in domains]
    kinds = field_kinds(records)
    anchor = options.as_of if options.as_of is not None else as_of
    if anchor is None:
        anchor = _newest_date(records, kinds)
    support: Counter[tuple[str, Any]] = Counter()
    wins: Counter[tuple[str, Any]] = Counter()
    for record, is_win in zip(records, wins_mask, strict=True):
        keys = value_keys(record, kinds, anchor)
        support.update(keys)
        if is_win:
            wins.update(keys)
    population, population_wins = len(records), sum(wins_mask)
    spellings = _spellings(records, kinds)
    categories = Counter(name for name, _ in support if kinds[name] == CATEGORICAL)
    values = []
    for name, key in sorted(support, key=lambda k: (k[0], str(k[1]))):
        kind = kinds[name]
        if kind == CATEGORICAL and categories[name] > options.max_categories:
            continue  # free text (names, descriptions): not a category
        if kind == NUMERIC:
            label = _band_label(key)
        elif kind == RECENCY:
            label = f"within {key} days"
        else:
            label = spellings.get((name, key), str(key))
        evidence = Evidence(support[(name, key)], wins[(name, key)], population, population_wins)
        values.append(Value(name, kind, key, label, evidence))
    derivation = Derivation(population, population_wins, options, values, [], missing)
    derivation.proposals = _propose(values, records, wins_mask, kinds, anchor, options, spellings)
    return derivation


def _newest_date(records: list[Company], kinds: Mapping[str, str]) -> float:
    from scorer.timefmt import parse_record_time

    newest = 0.0
    for record in records:
        for name, value in flatten(record):
            if kinds.get(name) == RECENCY:
                newest = max(newest, parse_record_time(value) or 0.0)
    return newest


def _band_run(bands: list[Value], options: DeriveOptions) -> list[Value]:
    """The contiguous run of bands around the best one: qualifying bands, bridged
    over single bands that lean the same way (lift > 1) but lack the evidence."""
    by_index = {v.key: v for v in bands}
    best = max(
        (v for v in bands if v.qualifies(options)),
        key=lambda v: (v.evidence.interval[0], -v.key),
    )
    run = [best]
    for step in (-1, 1):
        index = best.key + step
        while index in by_index:
            value = by_index[index]
            following = by_index.get(index + step)
            if value.qualifies(options):
                run.append(value)
            elif (
                value.evidence.lift > 1.0 and following is not None and following.qualifies(options)
            ):
                run.extend((value, following))
                index += step
            else:
                break
            index += step
    return sorted(run, key=lambda v: v.key)


def _greedy_values(
    name: str,
    kind: str,
    kept: list[Value],
    leaning: list[Value],
    records: list[Company],
    wins_mask: list[bool],
    options: DeriveOptions,
) -> list[Value]:
    """Values of one field chosen one at a time: the best first, then each next one
    only if it qualifies among the accounts the chosen ones do not match (a
    value that leans the right way may qualify only there: Great Britain once the
    many US accounts no longer dilute it).

    A list field's items are not exclusive: a company with many tools has
    snowflake more often and so every tool looks a little better than it is;
    judged among the accounts without snowflake, the bystanders fall back to 1.
    """
    path = tuple(name.split("."))
    chosen = [max(kept, key=lambda v: (v.evidence.interval[0], v.label))]
    candidates = {v.key: v for v in leaning if v.key != chosen[0].key}
    while candidates:
        match = _matcher(kind, [v.key for v in chosen])
        support: Counter[Any] = Counter()
        wins: Counter[Any] = Counter()
        rest = rest_wins = 0
        for record, is_win in zip(records, wins_mask, strict=True):
            value = lookup(record, path)
            if match(value):
                continue
            rest += 1
            rest_wins += is_win
            items = value if isinstance(value, list) else [value]
            for key in {x.casefold() for x in items if isinstance(x, str)} & candidates.keys():
                support[key] += 1
                wins[key] += is_win
        conditional = [
            Value(name, kind, key, v.label, Evidence(support[key], wins[key], rest, rest_wins))
            for key, v in sorted(candidates.items())
        ]
        fit = [v for v in conditional if v.qualifies(options)]
        if not fit:
            break
        best = max(fit, key=lambda v: (v.evidence.interval[0], v.label))
        chosen.append(candidates.pop(best.key))
    return chosen


def _matcher(kind: str, operand: Any) -> Callable[[Any], bool]:

    if kind == CATEGORICAL:
        allowed = {str(x).casefold() for x in operand}
        return lambda value: isinstance(value, str) and value.casefold() in allowed
    if kind == LIST:
        items = {str(x).casefold() for x in operand}
        return lambda value: (
            isinstance(value, list)
            and any(isinstance(x, str) and x.casefold() in items for x in value)
        )
    if kind == NUMERIC:
        low, high = operand

        def within(value: Any) -> bool:
            return kind_of(value) == NUMERIC and low <= float(value) <= high

        return within
    raise AssertionError(kind)


def _propose(
    values: list[Value],
    records: list[Company],
    wins_mask: list[bool],
    kinds: Mapping[str, str],
    anchor: float,
    options: DeriveOptions,
    spellings: Mapping[tuple[str, str], str],
) -> list[Proposal]:
    by_field: dict[str, list[Value]] = defaultdict(list)
    for value in values:
        by_field[value.field].append(value)
    drafts: list[tuple[str, str, Any, tuple[Value, ...], Evidence]] = []
    population, population_wins = len(records), sum(wins_mask)
    for name in sorted(by_field):
        kind = kinds[name]
        field_values = by_field[name]
        kept = [v for v in field_values if v.qualifies(options)]
        if not kept:
            continue
        if kind == RECENCY:
            best = max(kept, key=lambda v: (v.evidence.interval[0], -v.key))
            drafts.append((name, "within_days", best.key, (best,), best.evidence))
            continue
        if kind == NUMERIC:
            parts = _band_run([v for v in field_values if v.key >= 0], options)
            operand: Any = [BAND_EDGES[parts[0].key], BAND_EDGES[parts[-1].key + 1]]
            operand = [int(x) if x.is_integer() else x for x in operand]
            operator = "between"
        else:
            leaning = [v for v in field_values if v.evidence.lift > 1.0]
            parts = _greedy_values(name, kind, kept, leaning, records, wins_mask, options)
            operand = sorted(spellings.get((name, v.key), v.label) for v in parts)
            operator = "in" if kind == CATEGORICAL else "contains_any"
        match = _matcher(kind, operand)
        support = wins = 0
        path = tuple(name.split("."))
        for record, is_win in zip(records, wins_mask, strict=True):
            if match(lookup(record, path)):
                support += 1
                wins += is_win
        evidence = Evidence(support, wins, population, population_wins)
        drafts.append((name, operator, operand, tuple(parts), evidence))
    if not drafts:
        return []
    strongest = max(math.log2(max(e.lift, 1.0001)) for *_, e in drafts)
    proposals = []
    for name, operator, operand, draft_parts, evidence in drafts:
        weight = max(1, min(5, round(5 * math.log2(max(evidence.lift, 1.0001)) / strongest)))
        must_have = (
            evidence.won_share >= options.must_have_won_share
            and evidence.other_share <= options.must_have_max_other_share
        )
        proposals.append(
            Proposal(name, operator, operand, weight, must_have, evidence, draft_parts)
        )
    return sorted(proposals, key=lambda p: (-p.weight, -p.evidence.lift, p.field))
