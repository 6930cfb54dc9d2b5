"""`limit`, `pause`, `resume` and `queues`: what workers may claim, changed while they run.

Imported only when one of them runs (`main.Handler`). Each change prints one line and is
recorded in the control log with its actor and reason.
"""

from __future__ import annotations

import argparse

from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.cli import render
from jobtrail.adapters.sql.flow_control import QUEUE, TYPE
from jobtrail.domain.job import Meta


def _scope(args: argparse.Namespace) -> str:
    return "per concurrency key" if args.per_key else "in all"


def cmd_limit_set(trail: Jobtrail, args: argparse.Namespace) -> int:
    trail.flow().set_limit(
        args.job_type,
        args.max_running,
        per_key=args.per_key,
        reason=args.reason,
        meta=Meta(actor=args.actor),
    )
    print(f"limit set: at most {args.max_running} {args.job_type} job(s) running {_scope(args)}")
    return 0


def cmd_limit_remove(trail: Jobtrail, args: argparse.Namespace) -> int:
    trail.flow().remove_limit(
        args.job_type, per_key=args.per_key, reason=args.reason, meta=Meta(actor=args.actor)
    )
    print(f"limit removed: {args.job_type} {_scope(args)}")
    return 0


def cmd_limit_list(trail: Jobtrail, args: argparse.Namespace) -> int:
    rows = trail.flow().list_limits()
    if args.json:
        render.print_json(rows)
        return 0
    if not rows:
        print("no limits")
    for row in rows:
        scope = "per key" if row["per_key"] else "in all"
        print(f"{row['job_type']}: at most {row['max_running']} running {scope}")
    return 0


def _kind(args: argparse.Namespace) -> str:
    return TYPE if args.type else QUEUE


def cmd_pause(trail: Jobtrail, args: argparse.Namespace) -> int:
    kind = _kind(args)
    changed = trail.flow().pause(
        args.name, kind=kind, reason=args.reason, meta=Meta(actor=args.actor)
    )
    print(f"{kind} {args.name} {'paused' if changed else 'was already paused'}")
    return 0


def cmd_resume(trail: Jobtrail, args: argparse.Namespace) -> int:
    kind = _kind(args)
    trail.flow().resume(args.name, kind=kind, reason=args.reason, meta=Meta(actor=args.actor))
    print(f"{kind} {args.name} resumed")
    return 0


def cmd_queues(trail: Jobtrail, args: argparse.Namespace) -> int:
    flow = trail.flow()
    queues = flow.queues()
    paused_types = [p["name"] for p in flow.list_pauses() if p["kind"] == TYPE]
    if args.json:
        render.print_json({"queues": queues, "paused_types": paused_types})
        return 0
    if not queues:
        print("no queues: no job was queued yet")
    for queue in queues:
        counts = ", ".join(f"{status} {n}" for status, n in sorted(queue["jobs"].items()))
        state = " (paused)" if queue["paused"] else ""
        print(f"{queue['queue']}{state}: {counts or 'no jobs'}")
    if paused_types:
        print(f"paused types: {', '.join(paused_types)}")
    return 0
