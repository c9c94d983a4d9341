"""The pure domain core of aifleet.

Models of the fleet repo, placement, rendering, plans and audit arithmetic. Nothing in
this package does I/O, reads a clock, logs or awaits: it is plain functions over frozen
values, so the same inputs always give the same outputs (placement rule 6).
"""
