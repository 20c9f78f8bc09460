"""Repository tools (run from a checkout, not installed): `python -m tools.settings_table [--write]`."""
