"""`coinflow simulate`: the platform replayed day by day (it drives registry and serving)."""
