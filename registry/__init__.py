"""coinflow model registry: models-from-code pyfuncs, promotion, rollback and lineage."""
