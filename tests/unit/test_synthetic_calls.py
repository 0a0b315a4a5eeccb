"""The synthetic Segment calls (the demo's and bench-collect's traffic) are calls the
collector takes, and they link each company's visitors to that company."""

from __future__ import annotations

from collections import Counter

from scorer import synthetic
from scorer.collect.mapping import load_mapping
from scorer.collect.segment import Lead, Link, Mapper, Visit, identity
from scorer.enrichment.domains import normalise_domain
from scorer.events import event_from_document


def test_segment_calls_map_to_the_synthetic_events() -> None:
    events = list(synthetic.events(3000, synthetic.company_domains(40), seed=5))
    calls = list(synthetic.segment_calls(events))
    mapped = Mapper(load_mapping(None)).map_calls(calls, "web", received=0.0)
    visits = [o for o in mapped.outputs if isinstance(o, Visit)]
    links = [o for o in mapped.outputs if isinstance(o, Link)]
    leads = [o for o in mapped.outputs if isinstance(o, Lead)]
    kinds = Counter(e["type"] for e in events)
    # every visit and tracked signal is a visit of its original id, type and time
    assert [v.document["event_id"] for v in visits] == [
        e["event_id"] for e in events if e["type"] != "lead_created"
    ]
    assert Counter(v.document["type"] for v in visits) == kinds - Counter(
        lead_created=kinds["lead_created"]
    )
    # a lead for each work email, none for free mail
    work = [e for e in events if e["type"] == "lead_created" and event_from_document(e).account]
    assert sorted(lead.domain for lead in leads) == sorted(
        event_from_document(e).account or "" for e in work
    )
    # each link names the company of the visits made under that anonymousId
    linked = {link.identity: link.domain for link in links}
    assert len(linked) == mapped.calls["group"] + len(leads)  # groups, and identified leads
    by_visitor = {c["messageId"]: c.get("anonymousId") for c in calls}
    credited = 0
    for event in events:
        anon = by_visitor.get(event["event_id"])
        if event["type"] == "lead_created" or anon is None:
            continue
        domain = linked.get(identity("a", anon))
        if event["company_domain"] is None:
            assert domain is None  # unidentified visitors are never linked
        elif domain is not None:
            assert domain == normalise_domain(event["company_domain"])
            credited += 1
    assert credited > 0.8 * sum(1 for e in events if e.get("company_domain"))


def test_the_demo_reads_what_the_collector_took_from_its_metrics() -> None:
    """`scorer demo`'s closing line comes from the collector's own /metrics text."""
    from prometheus_client import CollectorRegistry, generate_latest

    from scorer.collect.metrics import CollectMetrics
    from scorer.demo_site import collector_counts

    registry = CollectorRegistry()
    metrics = CollectMetrics(registry, ["website"])
    metrics.calls.labels(source="website", type="page").inc(40)
    metrics.calls.labels(source="website", type="group").inc(5)
    metrics.stitch.labels(outcome="stitched").inc(12)
    metrics.stitch.labels(outcome="kept").inc(20)
    metrics.gauges(lambda: 8.0, lambda: 3.0)
    counts = collector_counts(generate_latest(registry).decode())
    assert counts["page"] == 40 and counts["group"] == 5
    assert counts["stitched"] == 12 and counts["kept"] == 20 and counts["unlinked"] == 8
