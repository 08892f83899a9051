"""flows: the application layer (Prefect flows, Ray dispatch, DVC/GX glue)."""
