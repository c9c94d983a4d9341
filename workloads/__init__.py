"""The desired-state side: the fleet repo in Git, read and validated into core models.

Imports `fleet` (the core) only; never `clusters` or `controllers`.
"""
