"""The demo harness: the only importer of `clusters.sim` besides `fleet sim`."""
