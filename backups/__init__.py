"""Backups that restore: `flask --app app backup create|restore` (the database, the data dir, a manifest)."""
