"""IVR flows as data (YAML); nothing executable lives here."""
