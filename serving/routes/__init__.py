"""API routers: predict, models/sweeps, operations (health, ready, metrics, admin)."""
