"""Combining committed shards into one dataset: the pure rules (coverage, columns, lineage) and
the run that streams, checks and publishes."""
