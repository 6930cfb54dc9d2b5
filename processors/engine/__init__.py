"""The worker engine: claims jobs, runs their processors, renews leases, reaps the dead.

- `worker`: `Worker`, the main loop (one turn: write the outcomes reported so far and claim
  what fits, in one transaction; heartbeats; the reaper; shutting down). It re-exports
  `WorkerSettings` and `WorkerStats`, and the errors `Worker` raises.
- `settings`: `WorkerSettings`, checked when made (`InvalidWorkerSettings`), and `WorkerStats`.
- `claims`: how many jobs to claim, the claim command, and handing claimed jobs to the
  threads in claim order.
- `runner`: the processor threads (started as needed once the registry holds an async
  processor); whatever a processor does becomes a `Finished`, exactly one per attempt, and
  a thread that dies is noticed and replaced.
- `event_loop`: the one event loop, on its own thread, that runs async processors as tasks.
- `wakeup`: the done queue whose wait a push wakeup or a stop can end, and how long an idle
  worker sleeps.
- `failures`: what a processor raised or returned, made safe to store (in its thread).
- `writer`: outcomes applied to the held jobs in memory, the one-job-at-a-time fallbacks,
  and the stats and log lines of what was recorded.
- `patience`: backing off after a database failure, and stopping when waiting cannot help.
- `outcomes`: what passes between the threads and the main loop.
- `reaper`: jobs whose lease expired go through the same `fail`.

Dependencies point one way: `worker` uses the others; `claims` uses `runner`; `runner` and
`writer` use `failures`; all of them use `outcomes` and `settings`, which, like `patience`,
use only `domain` and the processor API.
"""
