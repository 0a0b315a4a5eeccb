"""ICP documents compiled once into matchers, never re-interpreted per event.

`compile_icp` turns every criterion into a predicate over a known value, path
globs into regular expressions and tiers into a sorted table. Evaluating a
company against an ICP (`CompiledICP.company_fit`) happens once per company
record; only `within_days` criteria depend on the event's time, so they are
kept apart and checked per event against a pre-parsed timestamp.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from scorer.enrichment.domains import normalise_domain
from scorer.icp.document import Criterion, ICPDocument
from scorer.timefmt import parse_record_time

DAY = 86400.0


def _norm(value: Any) -> Any:
    """Comparable form: strings case-folded, numbers as floats."""
    if isinstance(value, str):
        return value.casefold()
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    return value


def _number(value: Any) -> float | None:
    kind = type(value)
    if kind is float or kind is int:  # the common case, first
        return float(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _hashable(values: list[Any]) -> frozenset[Any]:
    return frozenset(_norm(v) for v in values)


def _members(value: Any) -> list[Any]:
    """Comparable forms of a value's items (a scalar is a one-item list)."""
    return [_norm(x) for x in _items(value) if not isinstance(x, dict | list)]


# What a static criterion asks of a value (`Matcher.kind`).
ANY_OF = 0  # eq, in, contains_any
NONE_OF = 1  # not_in
ALL_OF = 2  # contains_all
IN_RANGE = 3  # gte, lte, between


class Matcher:
    """A static criterion's test of a value, with a fast path for the common plain
    string. A class rather than a closure per operator: `compiled.pxd` declares it an
    extension type, so a company's fit calls it at C level (a closure's Python call
    was about 1,500 instructions a criterion, callgrind)."""

    __slots__ = ("allowed", "high", "kind", "low")

    def __init__(
        self,
        kind: int,
        allowed: frozenset[Any] = frozenset(),
        low: float = -math.inf,
        high: float = math.inf,
    ) -> None:
        self.kind = kind
        self.allowed = allowed
        self.low = low
        self.high = high

    def matches(self, value: Any) -> bool:
        kind = self.kind
        if kind == IN_RANGE:
            number = _number(value)
            return number is not None and self.low <= number <= self.high
        if kind == ALL_OF:
            return self.allowed <= set(_members(value))
        if type(value) is str:
            return (value.casefold() in self.allowed) == (kind == ANY_OF)
        found = False
        for x in _members(value):  # not any(...): a generator cannot live in a cpdef method
            if x in self.allowed:
                found = True
                break
        return found == (kind == ANY_OF)


def _matcher(criterion: Criterion) -> Matcher:
    op = criterion.operator
    arg = criterion.operand(op)
    if op in ("eq", "in", "contains_any"):
        return Matcher(ANY_OF, _hashable([arg] if op == "eq" else arg))
    if op == "not_in":
        return Matcher(NONE_OF, _hashable(arg))
    if op == "contains_all":
        return Matcher(ALL_OF, _hashable(arg))
    if op in ("gte", "lte", "between"):
        low, high = {"gte": (arg, None), "lte": (None, arg), "between": arg}[op]
        return Matcher(
            IN_RANGE,
            low=-math.inf if low is None else float(low),
            high=math.inf if high is None else float(high),
        )
    raise AssertionError(f"no static matcher for {op}")  # exists/within_days handled apart


def _is_mapping(value: Any) -> TypeGuard[Mapping[str, Any]]:
    """`isinstance(value, Mapping)`, asking `type(value) is dict` first: the check
    against the ABC costs about 1,000 instructions, and records are dicts."""
    return type(value) is dict or isinstance(value, Mapping)


def lookup(record: Mapping[str, Any] | None, path: tuple[str, ...]) -> Any:
    """The value at a dotted path, or None when missing (= unknown)."""
    if record is None:
        return None
    if len(path) == 1:
        if type(record) is dict:  # at C level in the compiled core, not a method call
            flat = record
            return flat.get(path[0])
        return record.get(path[0])
    value: Any = record
    for part in path:
        if not _is_mapping(value):
            return None
        value = value.get(part)
    return value


@dataclass(frozen=True)
class CompiledCriterion:
    # Written out (not `slots=True`) for Cython: see CompanyFit.
    __slots__ = ("field", "match", "must_have", "operand", "operator", "path", "weight", "window")

    field: str
    path: tuple[str, ...]
    operator: str
    operand: Any
    weight: float
    must_have: bool
    match: Matcher | None  # None for exists / within_days
    window: float  # within_days in seconds, else 0


@dataclass(slots=True)
class CriterionResult:
    """A criterion evaluated on one company, for reasons. `matched` None = unknown."""

    criterion: CompiledCriterion
    value: Any
    matched: bool | None
    confidence: float | None
    source: str | None


@dataclass
class CompanyFit:
    """Everything about a company and an ICP that does not depend on the event.

    Only sums are kept (this is built for every company an event touches);
    the per-criterion detail for reasons comes from `CompiledICP.explain`.
    Slots written out rather than `slots=True`, which Cython's dataclasses
    refuse: `compiled.pxd` declares the class as an extension type.
    """

    __slots__ = ("quality", "static_disqualified", "static_weight", "timed")

    static_weight: float  # matched weight of the event-independent criteria
    static_disqualified: bool
    quality: float  # data quality, already divided by the total weight
    timed: tuple[tuple[float | None, float, float, bool], ...]  # (at, window, weight, must_have)


def _confidence(origin: Any) -> float:
    """A field's confidence from its `sources` entry: 1.0 unless given."""
    if type(origin) is not dict:
        if not _is_mapping(origin):
            return 1.0
        origin = dict(origin)
    entry = origin  # a dict: read at C level in the compiled core, not a method call
    confidence = _number(entry.get("confidence"))
    return 1.0 if confidence is None else min(1.0, max(0.0, confidence))


def _origin(sources: Mapping[str, Any], field: str) -> tuple[float, str | None]:
    """(confidence, source name) of a field; confidence defaults to 1.0."""
    origin = sources.get(field)
    if not _is_mapping(origin):
        return 1.0, None
    source = origin.get("source")
    return _confidence(origin), source if isinstance(source, str) else None


def judge(c: CompiledCriterion, value: Any, at: float | None) -> bool | None:
    """Whether a criterion matches a value: None when unknown (or timed and no `at`)."""
    if c.match is not None:
        return None if value is None else c.match.matches(value)
    if c.operator == "exists":
        return bool((value is not None) == c.operand)
    if value is None or at is None:
        return None
    stamp = parse_record_time(value)
    return stamp is not None and at - c.window <= stamp <= at


@dataclass(slots=True, frozen=True)
class _SignalRule:
    pattern: re.Pattern[str] | None
    points: float


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern), re.IGNORECASE)


@dataclass(frozen=True)
class CompiledICP:
    """An ICP ready to score: matchers, signal table, tiers, thresholds."""

    # Written out (not `slots=True`) for Cython: see CompanyFit.
    __slots__ = (
        "cooldown",
        "criteria",
        "document",
        "excluded",
        "half_life",
        "id",
        "min_fit",
        "min_total",
        "personas",
        "shadow",
        "signals",
        "tier_rank",
        "tiers",
        "total_weight",
        "version",
        "w_fit",
        "w_intent",
    )

    id: str
    version: int
    document: ICPDocument
    criteria: tuple[CompiledCriterion, ...]
    total_weight: float
    signals: Mapping[str, tuple[_SignalRule, ...]]
    personas: tuple[tuple[str, tuple[str, ...], float], ...]
    half_life: float
    w_fit: float
    w_intent: float
    tiers: tuple[tuple[float, str], ...]  # highest threshold first
    tier_rank: Mapping[str, float]
    min_total: float
    min_fit: float
    cooldown: float
    excluded: frozenset[str]
    shadow: bool  # scored, never alerts: would-be alerts go to account-scores

    def company_fit(self, record: Mapping[str, Any] | None) -> CompanyFit:
        """Sum up every event-independent criterion on a record (None = no record)."""
        found = record.get("sources") if record is not None else None
        # A dict, read at C level in the compiled core (a Mapping's `get` was a
        # method call per criterion, ~400 instructions; callgrind).
        sources = found if type(found) is dict else dict(found) if _is_mapping(found) else {}
        static_weight = quality = 0.0
        disqualified = False
        timed = []
        for c in self.criteria:
            value = lookup(record, c.path)
            if value is None and c.operator != "exists":
                continue  # unknown: no fit, no quality, never disqualifies
            origin = sources.get(c.field)
            quality += c.weight if origin is None else c.weight * _confidence(origin)
            if c.operator == "within_days":
                timed.append((parse_record_time(value), c.window, c.weight, c.must_have))
                continue
            if judge(c, value, None):
                static_weight += c.weight
            elif c.must_have:
                disqualified = True
        return CompanyFit(static_weight, disqualified, quality / self.total_weight, tuple(timed))

    def explain(self, record: Mapping[str, Any] | None, at: float) -> list[CriterionResult]:
        """Every criterion on a record for an event at `at`, with value and source."""
        sources = record.get("sources") if record is not None else None
        if not _is_mapping(sources):
            sources = {}
        out = []
        for c in self.criteria:
            value = lookup(record, c.path)
            matched = judge(c, value, at)
            confidence, source = _origin(sources, c.field)
            known = matched is not None
            out.append(CriterionResult(c, value, matched, confidence if known else None, source))
        return out

    def event_points(self, event_type: str, path: str | None) -> float:
        """Highest points of the signals matching an event type and URL path."""
        for rule in self.signals.get(event_type, ()):
            if rule.pattern is None or (path is not None and rule.pattern.match(path)):
                return rule.points
        return 0.0

    def persona(self, title: str | None) -> tuple[str | None, float]:
        """The highest-scoring persona whose terms occur in a lead's title."""
        if not title:
            return None, 0.0
        lowered = title.casefold()
        for name, terms, points in self.personas:
            for term in terms:  # not any(...): a generator cannot live in a cpdef method
                if term in lowered:
                    return name, points
        return None, 0.0

    def tier(self, total: float) -> str | None:
        for threshold, name in self.tiers:
            if total >= threshold:
                return name
        return None


def compile_icp(document: ICPDocument) -> CompiledICP:
    """Compile a validated ICP document."""
    criteria = tuple(
        CompiledCriterion(
            field=c.field,
            path=tuple(c.field.split(".")),
            operator=c.operator,
            operand=c.operand(c.operator),
            weight=c.weight,
            must_have=c.must_have,
            match=None if c.operator in ("exists", "within_days") else _matcher(c),
            window=(c.within_days or 0.0) * DAY,
        )
        for c in document.fit
    )
    signals: dict[str, list[_SignalRule]] = {}
    for s in document.intent.signals:
        rule = _SignalRule(_glob(s.path) if s.path else None, s.points)
        signals.setdefault(s.type, []).append(rule)
    personas = sorted(
        ((p.name, tuple(t.casefold() for t in p.title_any), p.points) for p in document.personas),
        key=lambda persona: -persona[2],
    )
    return CompiledICP(
        id=document.id,
        version=document.version,
        document=document,
        criteria=criteria,
        total_weight=sum(c.weight for c in criteria),
        signals={k: tuple(sorted(v, key=lambda r: -r.points)) for k, v in signals.items()},
        personas=tuple(personas),
        half_life=document.intent.half_life,
        w_fit=document.weights.fit,
        w_intent=document.weights.intent,
        tiers=tuple(sorted(((t, n) for n, t in document.tiers.items()), reverse=True)),
        tier_rank=dict(document.tiers),
        min_total=document.hot.min_total,
        min_fit=document.hot.min_fit,
        cooldown=document.hot.cooldown,
        excluded=frozenset(normalise_domain(d) for d in document.exclude.domains),
        shadow=document.mode == "shadow",
    )
