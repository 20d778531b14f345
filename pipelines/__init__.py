"""coinflow pipeline stages, one subpackage per concern in dvc.yaml order (data, gate, training,
sweep)."""
