"""Alembic migrations of the hotline schema (applied by `flask --app app db upgrade`)."""
