"""The job lifecycle: pure Python and `transitions`, no I/O."""
