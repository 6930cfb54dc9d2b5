"""`jobtrail replay`, `jobtrail seal` and `jobtrail export`: the auditor's commands.

replay exits 0 when the log is clean, 1 when it found problems (or could not run), 2 on
usage errors. Its report holds no timings or clocks, so two runs over the same log print
the same report.

Building the parser (`add_commands`, the argument types) imports only the standard library
and `domain`: `jobtrail --help` must not load SQLAlchemy, Kafka or rich. Each command
imports the audit adapter and rich when it runs.

About 350 lines, over the ~300 a module aims at: the CLI has one module per command group,
and this group's parts (replay's arguments, its report and ``--as-of`` rows for people,
seal, export) are each small and used by nothing else.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobtrail.adapters.cli.args import MAX_PROBLEMS, positive_float, whole
from jobtrail.domain import limits
from jobtrail.domain.canonical import utc_iso
from jobtrail.domain.errors import InvalidJobId, JobNotFound
from jobtrail.domain.ids import parse_job_id

if TYPE_CHECKING:
    from jobtrail.adapters.audit.checks.report import Report
    from jobtrail.adapters.audit.passes import Scope
    from jobtrail.adapters.audit.staging import Loaded
    from jobtrail.adapters.bootstrap import Jobtrail

AS_OF_COLUMNS = {
    "id": 36,
    "job_type": 24,
    "status": 10,
    "attempt": 7,
    "error_code": 20,
    "completed_at": 32,
    "version": 7,
}
"""The columns ``--as-of`` prints for people, with their widths."""


def add_commands(commands: Any) -> None:
    """Add replay, seal and export to the `jobtrail` subcommands."""
    replay = commands.add_parser(
        "replay", help="verify the log, rebuild the job table and diff it (read-only)"
    )
    replay.add_argument("--job", type=job_id_arg, help="only this job's history")
    replay.add_argument(
        "--since", type=position_arg, metavar="POSITION", help="only jobs with events after it"
    )
    replay.add_argument(
        "--as-of",
        type=time_arg,
        metavar="TIME",
        help="print the job table as it was then (ISO 8601; no zone means UTC)",
    )
    replay.add_argument(
        "--source",
        type=source_arg,
        default=Source("db"),
        metavar="db|file:PATH|kafka",
        help="where the log is read from (default db)",
    )
    replay.add_argument(
        "--archives",
        type=directory_arg,
        metavar="DIR",
        help="the archive files: checked against their records, and the seals before each "
        "archive's cut checked again with them",
    )
    replay.add_argument(
        "--idle",
        type=positive_float,
        default=2.0,
        help="kafka: stop reading after this many seconds without a record",
    )
    replay.add_argument(
        "--max-problems",
        type=whole(MAX_PROBLEMS),
        default=10_000,
        help="problems listed (all are counted; default %(default)s)",
    )
    replay.add_argument(
        "--workers",
        type=workers_arg,
        metavar="N",
        help="processes verifying a PostgreSQL log (default: by the log's size and the cores)",
    )
    replay.add_argument("--json", action="store_true")
    replay.set_defaults(handler=cmd_replay)

    seal = commands.add_parser("seal", help="append a checkpoint of the whole log")
    seal.add_argument("--actor", default="cli")
    seal.add_argument("--json", action="store_true")
    seal.set_defaults(handler=cmd_seal)

    exporter = commands.add_parser("export", help="write the log as JSON lines with a manifest")
    exporter.add_argument("--out", type=Path, required=True, metavar="FILE")
    exporter.add_argument("--force", action="store_true", help="replace FILE if it exists")
    exporter.add_argument("--json", action="store_true")
    exporter.set_defaults(handler=cmd_export)


def say(text: str) -> None:
    """One line of output on stdout (the commands' output, not logging)."""
    sys.stdout.write(f"{text}\n")


# ------------------------------------------------------------------------ arguments


@dataclass(frozen=True)
class Source:
    kind: str
    path: Path | None = None


def source_arg(text: str) -> Source:
    if text in ("db", "kafka"):
        return Source(text)
    if text.startswith("file:") and len(text) > len("file:"):
        path = Path(text[len("file:") :])
        if not path.is_file():
            raise argparse.ArgumentTypeError(f"no file {path}")
        return Source("file", path)
    raise argparse.ArgumentTypeError(f"expected db, file:PATH or kafka, not {text!r}")


def directory_arg(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no directory {path}")
    return path


def job_id_arg(text: str) -> str:
    try:
        return parse_job_id(text)
    except InvalidJobId as error:
        raise argparse.ArgumentTypeError(str(error)) from None


position_arg = whole(limits.POSITION)
"""A log position: 0 to 2^63-1 (a BIGINT)."""


def workers_arg(text: str) -> int:
    from jobtrail.adapters.audit.parallel import MAX_WORKERS

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"workers are 1 to {MAX_WORKERS}, not {text!r}") from None
    if not 1 <= value <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"workers are 1 to {MAX_WORKERS}, not {value}")
    return value


def time_arg(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (like 2026-11-29T13:41:09Z)"
        ) from None
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first UTC day Python holds
        raise argparse.ArgumentTypeError(
            f"{text!r} is outside the years 1 to 9999 in UTC"
        ) from None


# ------------------------------------------------------------------------ replay


def cmd_replay(trail: Jobtrail, args: argparse.Namespace) -> int:
    from jobtrail.adapters.audit.checks.report import show
    from jobtrail.adapters.audit.passes import Scope
    from jobtrail.adapters.audit.replay import replay_database

    scope = Scope(args.job, args.since, args.as_of)
    rows = RowPrinter(args.json) if scope.as_of else None
    with progress_bar() as progress:
        if args.source.kind == "db":
            report = replay_database(
                trail.engine,
                scope,
                on_row=rows,
                progress=progress,
                max_problems=args.max_problems,
                workers=args.workers,
                archives=args.archives,
            )
        else:
            report = _replay_elsewhere(args, scope, rows, progress)
    if args.job is not None and report.jobs == 0 and report.clean:
        raise JobNotFound(job_id=args.job)  # neither in the log nor in the job table
    if rows is not None:
        rows.finish(report)
    elif args.json:
        say(json.dumps(report.as_dict(), indent=2, default=show))
    else:
        print_report(report)
    return 0 if report.clean else 1


def _replay_elsewhere(
    args: argparse.Namespace, scope: Scope, rows: RowPrinter | None, progress: Any
) -> Report:
    """Replay an export file or the topic, loaded into a staging database first."""
    from jobtrail.adapters.audit.checks.report import Report
    from jobtrail.adapters.audit.file_source import load_file
    from jobtrail.adapters.audit.topic_source import load_topic
    from jobtrail.adapters.config import Settings

    if args.source.kind == "file":
        loaded = load_file(args.source.path)
        source = f"file:{args.source.path}"
    else:
        settings = Settings.from_env()
        loaded = load_topic(settings.kafka_bootstrap, settings.kafka_topic, args.idle)
        source = f"kafka:{settings.kafka_topic}"
    report = Report(source=source, scope=scope.as_dict(), max_problems=args.max_problems)
    report.add(loaded.problems)
    if loaded.archive is not None:
        report.notes.append(
            f"an archive cut at seal {loaded.archive.get('seal_id')}: its histories and "
            "manifest were checked; its record and the seals are checked with the log "
            "(`jobtrail replay --archives DIR`)"
        )
    try:
        return _staged(loaded, report, scope, rows, progress)
    finally:
        loaded.staging.close()


def _staged(
    loaded: Loaded, report: Report, scope: Scope, rows: RowPrinter | None, progress: Any
) -> Report:
    from jobtrail.adapters.audit.replay import replay_staged

    return replay_staged(
        loaded.staging.engine,
        loaded.tables,
        report,
        scope,
        manifest=loaded.manifest,
        on_row=rows,
        progress=progress,
    )


class RowPrinter:
    """Prints the rows of ``--as-of`` as they are rebuilt (nothing is held in memory).

    With ``--json`` the output is one JSON object, ``{"rows": [...], "report": {...}}``,
    written as it goes.
    """

    def __init__(self, as_json: bool) -> None:
        from jobtrail.adapters.audit.checks.report import show

        self.show = show
        self.as_json = as_json
        self.count = 0
        if as_json:
            sys.stdout.write('{"rows": [')
        else:
            say("  ".join(f"{c:<{w}}" for c, w in AS_OF_COLUMNS.items()).rstrip())

    def __call__(self, row: dict[str, Any]) -> None:
        if self.as_json:
            separator = "," if self.count else ""
            sys.stdout.write(f"{separator}\n{json.dumps(row, default=self.show)}")
        else:
            say("  ".join(f"{_cell(row.get(c)):<{w}}" for c, w in AS_OF_COLUMNS.items()).rstrip())
        self.count += 1

    def finish(self, report: Report) -> None:
        if self.as_json:
            report_json = json.dumps(report.as_dict(), default=self.show)
            sys.stdout.write(f'\n], "report": {report_json}}}\n')
        else:
            say(f"{self.count} job(s) as of {report.scope['as_of']}")
            print_report(report)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return utc_iso(value) if isinstance(value, datetime) else str(value)


def print_report(report: Report) -> None:
    say(f"replay of {report.source}: {report.events:,} events, {report.jobs:,} jobs")
    seals = report.seals
    if seals.get("checked"):
        say(
            f"  seals: {seals['seals']} checked, {seals['mismatched']} do not match "
            f"(log: {seals['events']:,} events up to position {seals['last_position']}, "
            f"digest {seals['digest'][:16]})"
        )
    else:
        say(f"  seals: not checked: {seals.get('reason')}")
    if archives := seals.get("archives", {}).get("records"):
        summary = seals["archives"]
        say(
            f"  archives: {summary['events']:,} events of {summary['jobs']:,} jobs are in "
            f"{archives} archive(s), not in the log; "
            + (
                f"{summary.get('files_found', 0)} file(s) checked against their records"
                if summary["files_checked"]
                else "their files were not checked (--archives DIR checks them)"
            )
        )
    if report.rows_compared:
        say(f"  job table: {report.rows_compared:,} rebuilt rows compared with the live table")
    if report.rows_pruned and report.pruned_before:
        say(
            f"  job table: {report.rows_pruned:,} rows of jobs finished before "
            f"{utc_iso(report.pruned_before)} were pruned (`jobtrail rebuild` restores them)"
        )
    if report.duplicates:
        say(f"  duplicates skipped (the same event twice): {report.duplicates}")
    legacy = report.hash_forms["legacy"]
    if legacy:
        restored = report.hash_forms["legacy_restored"]
        say(
            f"  hashes: {report.hash_forms['jcs']:,} by RFC 8785, {legacy:,} by the legacy "
            "rule of events written before it"
            + (
                f" ({restored:,} verified once the numbers PostgreSQL's jsonb rewrote, such as "
                "1e16 and -0.0, were put back)"
                if restored
                else ""
            )
        )
    for note in report.notes:
        say(f"  {note}")
    if report.clean:
        say("clean: no problems found")
        return
    say(f"{report.problem_count} problem(s):")
    for problem in report.problems:
        where = f"job {problem.job_id} v{problem.version}" if problem.job_id else "log"
        at = f" @{problem.position}" if problem.position is not None else ""
        say(f"  {where}{at} {problem.kind}: {problem.reason}")
    if len(report.problems) < report.problem_count:
        say(f"  … and {report.problem_count - len(report.problems)} more (see --max-problems)")


@contextmanager
def progress_bar() -> Iterator[Any]:
    """A progress bar on stderr while stderr is a terminal; otherwise nothing."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    tasks: dict[str, TaskID] = {}

    def advance(stage: str, total: int | None, done: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.advance(tasks[stage], done)

    with bar:
        yield advance


# ------------------------------------------------------------------------ seal, export


def cmd_seal(trail: Jobtrail, args: argparse.Namespace) -> int:
    from jobtrail.adapters.audit.seal import append_seal

    limits.ACTOR.check(args.actor, "--actor")  # job_log_seals.actor is a VARCHAR(200)
    seal = append_seal(trail.engine, args.actor)
    if args.json:
        say(
            json.dumps(
                {
                    "seal_id": seal.seal_id,
                    "position": seal.position,
                    "event_count": seal.event_count,
                    "digest": seal.digest,
                }
            )
        )
    else:
        say(
            f"seal {seal.seal_id}: {seal.event_count} events up to position {seal.position}, "
            f"digest {seal.digest}"
        )
    return 0


def cmd_export(trail: Jobtrail, args: argparse.Namespace) -> int:
    from jobtrail.adapters.audit.export import export

    done = export(trail.engine, args.out, force=args.force)
    if args.json:
        say(json.dumps({"out": str(args.out), **done.__dict__}))
    else:
        say(
            f"exported {done.count} events up to position {done.last_position} and "
            f"{done.seals} seal(s) to {args.out} (digest {done.digest})"
        )
    return 0
