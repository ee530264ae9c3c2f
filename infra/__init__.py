"""Shared infrastructure: configuration, database, clock and field encryption."""
