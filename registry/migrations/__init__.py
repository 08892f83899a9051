"""Alembic migrations of the registry schema; `registry.migrate.upgrade(url)` applies them."""
