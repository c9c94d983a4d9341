"""The controller's runtime: the Manager, its loops, work queue, reconcile."""
