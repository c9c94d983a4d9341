"""Placement: where every workload of a fleet runs, and why. Pure and deterministic.

`place(spec, capacity, previous)` is the entry point (see `fleet.placement.core`);
the result types are in `fleet.placement.types`.
"""
