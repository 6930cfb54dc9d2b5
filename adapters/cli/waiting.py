"""`wait` and `submit --wait`: block until a job is final, print its outcome, exit with it.

A script needs the outcome in the exit status and the result on stdout, nothing else there:

======  ===============================================================================
status  what is printed
======  ===============================================================================
0       completed: the result as JSON on one line (stdout)
1       failed: ``jobtrail: job ID failed: CODE: MESSAGE``, one line (stderr); a
        jobtrail error (unknown or malformed id, no database) is one line and 1 too
3       cancelled: ``jobtrail: job ID was cancelled[: REASON]`` (stderr)
4       timed out: ``jobtrail: error: job ID did not finish within S seconds`` (stderr)
======  ===============================================================================

Usage errors (a negative ``--timeout``, a missing JOB_ID) exit 2, like every command's.
`wait` opens SQLite read-write, not read-only: a read-only reader in a directory it cannot
write opens the file immutable, and would never see the job finish.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.domain.errors import WaitTimedOut
from jobtrail.domain.status import JobStatus

COMPLETED, FAILED, CANCELLED, TIMED_OUT = 0, 1, 3, 4
"""The exit statuses (2 is argparse's, for usage errors)."""


def cmd_wait(trail: Jobtrail, args: argparse.Namespace) -> int:
    return wait_and_report(trail, args.job_id, args.timeout)


def wait_and_report(trail: Jobtrail, job_id: str, timeout: float) -> int:
    """Wait for ``job_id``, print how it ended, and return the exit status for it."""
    sys.stdout.flush()  # `submit --wait`: the caller gets the id before the wait starts
    try:
        row = trail.wait(job_id, timeout)
    except WaitTimedOut as error:
        print(f"jobtrail: error: {error}", file=sys.stderr)
        return TIMED_OUT
    return report(trail, row)


def report(trail: Jobtrail, row: dict[str, Any]) -> int:
    status = JobStatus(row["status"])
    if status is JobStatus.COMPLETED:
        print(json.dumps(row["result"], ensure_ascii=False))
        return COMPLETED
    if status is JobStatus.FAILED:
        print(
            f"jobtrail: job {row['id']} failed: {row['error_code']}: "
            f"{one_line(row['error_message'])}",
            file=sys.stderr,
        )
        return FAILED
    reason = cancel_reason(trail, row["id"])
    because = f": {reason}" if reason else ""
    print(f"jobtrail: job {row['id']} was cancelled{because}", file=sys.stderr)
    return CANCELLED


def cancel_reason(trail: Jobtrail, job_id: str) -> str | None:
    """The reason its `JobCancelled` event gives (the `job` table does not keep it)."""
    last = trail.history(job_id)[-1]
    reason = getattr(last, "reason", None) if last.type == "JobCancelled" else None
    return one_line(reason) if reason else None


def one_line(text: Any) -> str:
    """A message on one line: its whitespace, newlines included, collapsed."""
    return " ".join(str(text).split()) if text is not None else "-"
