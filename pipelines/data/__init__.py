"""Data stages: ingest, fetch, version, cut (and the published history the gate compares with)."""
