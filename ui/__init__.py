"""Gradio UI over the coinflow serving API (HTTP only: no model, torch or MLflow here)."""
