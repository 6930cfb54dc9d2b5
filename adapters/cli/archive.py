"""`jobtrail archive`: move finished jobs' whole histories out of the log into a file.

``archive --before TIME --out FILE`` seals the log, then archives the jobs that finished
before TIME; ``archive --seal ID --out FILE`` archives the jobs finished by an existing
seal. It prints one line (what moved, where, the record's id); nothing to archive is not an
error (exit 0), so a crontab line can run it every night. ``--list`` prints the records.

Building the parser imports only the standard library and `args`; the handler imports the
audit adapter when it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobtrail.adapters.cli.args import moment_or_age, whole
from jobtrail.domain import limits

if TYPE_CHECKING:
    from jobtrail.adapters.bootstrap import Jobtrail


def add_command(commands: Any) -> None:
    """Add `archive` to the `jobtrail` subcommands."""
    archive = commands.add_parser(
        "archive",
        help="move finished jobs' histories from the log into a file, with a record to verify",
        description="Move the whole histories of jobs that finished before a seal (and, with "
        "--before, before a time) out of the log and their rows out of the job table, into an "
        "export-format FILE, after recording its digest, counts and positions. `jobtrail "
        "replay --archives DIR` verifies the files against their records.",
    )
    cut = archive.add_mutually_exclusive_group()
    cut.add_argument(
        "--before",
        type=moment_or_age,
        metavar="TIME",
        help="jobs finished before TIME (ISO 8601, or an age like 90d); seals the log first",
    )
    cut.add_argument(
        "--seal",
        dest="seal_id",
        type=whole(limits.POSITION),
        metavar="SEAL_ID",
        help="jobs finished by this existing seal",
    )
    archive.add_argument("--out", type=Path, metavar="FILE", help="the archive file to write")
    archive.add_argument("--force", action="store_true", help="replace FILE if it exists")
    archive.add_argument("--list", action="store_true", help="print the archive records")
    archive.add_argument("--actor", default="cli", help="who archives (recorded)")
    archive.add_argument("--json", action="store_true")
    archive.set_defaults(handler=cmd_archive)


def cmd_archive(trail: Jobtrail, args: argparse.Namespace) -> int:
    if args.list:
        return _list(trail, args)
    if args.out is None or (args.before is None and args.seal_id is None):
        sys.stderr.write(
            "jobtrail: error: give --before TIME or --seal SEAL_ID, and --out FILE "
            "(see `jobtrail archive --help`)\n"
        )
        return 2
    limits.ACTOR.check(args.actor, "--actor")
    from jobtrail.adapters.audit.archive import Cut, archive

    done = archive(
        trail.engine, Cut(args.seal_id, args.before), args.out, args.actor, force=args.force
    )
    if done is None:
        _say(args, {"archived": None}, "nothing to archive: no finished job is left before the cut")
        return 0
    r = done.record
    _say(
        args,
        {"archived": r.__dict__, "out": str(args.out), "replaced_unrecorded_file": done.replaced},
        f"archive {r.archive_id}: {r.event_count:,} events of {r.job_count:,} jobs "
        f"(positions {r.first_position}-{r.last_position}, cut at seal {r.seal_id}) moved to "
        f"{args.out} ({r.file_bytes:,} bytes, sha256 {r.file_digest})",
    )
    return 0


def _list(trail: Jobtrail, args: argparse.Namespace) -> int:
    from jobtrail.adapters.audit.reads import LIVE, read_archives
    from jobtrail.adapters.sql.engine import translated_errors

    with translated_errors(), trail.engine.connect() as conn:
        records = read_archives(conn, LIVE)
    if args.json:
        sys.stdout.write(json.dumps([r.__dict__ for r in records]) + "\n")
        return 0
    for r in records:
        sys.stdout.write(
            f"archive {r.archive_id}: {r.file_name}  {r.event_count:,} events, "
            f"{r.job_count:,} jobs, positions {r.first_position}-{r.last_position}, "
            f"seal {r.seal_id}, sha256 {r.file_digest}\n"
        )
    if not records:
        sys.stdout.write("no archives\n")
    return 0


def _say(args: argparse.Namespace, value: dict[str, Any], line: str) -> None:
    sys.stdout.write((json.dumps(value) if args.json else line) + "\n")
