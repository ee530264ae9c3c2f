"""The staff web face: sign-in, pages per area, their read models, languages, templates, static files."""
