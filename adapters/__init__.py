"""Everything that talks to the outside, grouped by what it talks to.

`sql/` (SQLite and PostgreSQL: engine, schema and migrations, event store, queue,
queries), `kafka/` (codec, publisher, relay, consumer, schemas), `audit/` (replay, seal,
export), `cli/` (the `jobtrail` command), `config` (the JOBTRAIL_* environment) and
`bootstrap`, the one place that wires them to the domain: `jobtrail.connect`.
"""
