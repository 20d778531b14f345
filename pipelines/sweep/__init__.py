"""The Optuna sweep: study, workers, storage, report, and reading a sweep back."""
