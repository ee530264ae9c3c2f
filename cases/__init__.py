"""Offices, calls, cases and their workflow: the domain the hotline feeds."""
