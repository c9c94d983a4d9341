"""A sealed ledger with one record of every event kind: what the ledger tests share."""

from __future__ import annotations

from fleet.ledger import Entry, seal

EVENTS: list[Entry] = [
    Entry("2026-11-23T10:00:00Z", "Placed", "nlp/train", commit="c1", intent_hash="i1",
          cluster="eu-fra-1", jurisdiction="DE", data_class="eu-personal",
          policy_version="p1", flavour="h100-80gb", gpus=16, reason="best fit"),
    Entry("2026-11-23T10:00:01Z", "Applied", "nlp/train", commit="c1", cluster="eu-fra-1",
          jurisdiction="DE", manifest_digest="d1", flavour="h100-80gb", gpus=16),
    Entry("2026-11-23T11:00:00Z", "DriftCorrected", "nlp/train", commit="c1",
          cluster="eu-fra-1", jurisdiction="DE", reason="spec.parallelism changed by kubectl"),
    Entry("2026-11-23T12:00:00Z", "Moved", "nlp/train", commit="c2", cluster="eu-par-1",
          from_cluster="eu-fra-1", jurisdiction="FR", flavour="h100-80gb", gpus=16),
    Entry("2026-11-23T12:00:05Z", "Pruned", "nlp/train", commit="c2", cluster="eu-fra-1",
          jurisdiction="DE"),
    Entry("2026-11-23T13:00:00Z", "FailedOver", "nlp/train", commit="c2",
          cluster="eu-ams-1", from_cluster="eu-par-1", jurisdiction="NL", gpus=16),
    Entry("2026-11-23T14:00:00Z", "Refused", "bio/phi", commit="c2", data_class="us-phi",
          result="refused", reason="0/3 clusters: 3 residency us-phi"),
    Entry("2026-11-23T14:00:00Z", "Pending", "bio/big", commit="c2", result="pending",
          reason="0/3 clusters: 3 no b200"),
    Entry("2026-11-23T15:00:00Z", "Observed", "x/manual", cluster="us-east-1",
          jurisdiction="US", gpus=8, result="unplaced", reason="GPU pods with no placement"),
]


def lines() -> list[str]:
    return [r.line() for r in seal(EVENTS)]
