"""coinflow model registry: register, score, promote, aliases, lock, lineage, decision records."""
