"""Embedded PostgreSQL and Redis for the zero-setup mode, owned by one process per data dir."""
