"""Training stages: features, one tracked run, backtests, packaging a version."""
