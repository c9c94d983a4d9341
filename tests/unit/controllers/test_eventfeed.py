"""The events feed's ring: bounded, paged by `seq`, honest about what it dropped."""

from __future__ import annotations

from controllers.status.eventfeed import REASON_MAX, EventFeed
from tests.support.clock import FakeClock


def test_an_event_carries_time_seq_and_the_ledger_fields_in_camel_case() -> None:
    clock = FakeClock(1_796_000_000.25)
    feed = EventFeed(clock=clock)
    feed.record("FailedOver", "nlp-team/train", cluster="eu-par-1", from_cluster="eu-fra-1",
                flavour="h100-80gb", gpus=16, jurisdiction="FR", intent_hash="x" * 64,
                reason="")
    clock.advance(1.5)
    feed.note("ClusterUnreachable", cluster="eu-fra-1", reason="was Degraded", acting=False)
    first, second = feed.document()["events"]
    assert first == {"seq": 1, "time": "2026-11-30T00:53:20.250Z", "event": "FailedOver",
                     "workload": "nlp-team/train", "acting": True, "cluster": "eu-par-1",
                     "fromCluster": "eu-fra-1", "flavour": "h100-80gb", "gpus": 16,
                     "jurisdiction": "FR"}
    assert second == {"seq": 2, "time": "2026-11-30T00:53:21.750Z",
                      "event": "ClusterUnreachable", "workload": None, "acting": False,
                      "cluster": "eu-fra-1", "reason": "was Degraded"}


def test_the_ring_keeps_the_newest_and_says_when_a_reader_missed_some() -> None:
    feed = EventFeed(size=3, clock=FakeClock())
    for i in range(5):
        feed.record("Placed", f"t/w{i}")
    doc = feed.document(since=0)
    assert [e["seq"] for e in doc["events"]] == [3, 4, 5]
    assert (doc["latestSeq"], doc["oldestSeq"], doc["truncated"]) == (5, 3, True)
    assert feed.document(since=2)["truncated"] is False
    assert feed.document(since=4)["events"][0]["workload"] == "t/w4"
    assert feed.document(since=5)["events"] == []
    assert [e["seq"] for e in feed.document(workload="t/w3")["events"]] == [4]


def test_an_empty_feed_and_long_reasons() -> None:
    feed = EventFeed(clock=FakeClock())
    assert feed.document() | {"events": None} == {
        "apiVersion": "aifleet.dev/v1alpha1", "kind": "FleetEvents", "latestSeq": 0,
        "oldestSeq": 1, "size": 500, "truncated": False, "events": None}
    feed.record("Pending", "t/w", reason="x" * 1000)
    assert len(feed.document()["events"][0]["reason"]) == REASON_MAX
