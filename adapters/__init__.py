"""Everything that talks to the outside: SQL, the CLI, configuration, wiring."""
