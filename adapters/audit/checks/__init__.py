"""Pure checks of a stored log, streamed: histories, seals, and the rebuilt `job` table.

Nothing here reads a database; adapters feed it records (`records`). Two passes, each over
one sorted stream, so memory does not grow with the log:

- in position order, `seal_check.check_seals` folds every event into the running digest and
  compares it with each seal (catches deleted, inserted and reordered events);
- in ``(job_id, version)`` order, `history.verify_job` checks one job's history (versions,
  the one Machine, attempts, the hash chain, each hash recomputed from the stored envelope
  by the rule it names; `legacy` undoes the number rewrites of PostgreSQL's jsonb for events
  hashed before RFC 8785) and folds it into the row the projection would make, which
  `row_diff.diff_rows` compares with the live row.

`report.Report` adds up what both passes found. These modules import only `domain` and
`projections`.
"""
