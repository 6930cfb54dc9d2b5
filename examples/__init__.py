"""Example services built on jobtrail's public API (not part of the installed package)."""
