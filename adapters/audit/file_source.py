"""`jobtrail replay --source file:PATH`: an export file loaded into staging.

Whatever is wrong with the file itself (a line that is no event, seal or manifest, a
missing manifest, lines after it) is a problem of the report, not an error: the auditor
gets every finding at once. Only a file that is no export at all is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from jobtrail.adapters.audit.checks.records import Problem, StoredEvent
from jobtrail.adapters.audit.export_format import ARCHIVE, FORMAT_VERSION, HEADER, Manifest
from jobtrail.adapters.audit.published import stored_event
from jobtrail.adapters.audit.staging import Loaded, Staging
from jobtrail.adapters.kafka.errors import UndecodableMessage
from jobtrail.domain.errors import JobtrailError
from jobtrail.domain.seals import Seal


class ExportUnreadable(JobtrailError):
    """{path} is not a jobtrail export: {reason}."""


def load_file(path: Path) -> Loaded:
    """The file's events and seals in staging, with the problems of the file itself."""
    staging = Staging()
    loaded = Loaded(staging, staging.tables, [])
    seals: list[Seal] = []
    try:
        with path.open(encoding="utf-8") as f:
            _check_header(path, f.readline())
            staging.add_events(_file_events(f, loaded, seals))
    except (OSError, UnicodeDecodeError) as error:
        staging.close()
        raise ExportUnreadable(path=path, reason=str(error)) from error
    staging.add_seals(seals)
    if loaded.manifest is None:
        loaded.problems.append(
            Problem("manifest_missing", "the file has no manifest line: it was cut short")
        )
    return loaded


def _check_header(path: Path, line: str) -> None:
    try:
        header = json.loads(line)
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get(HEADER) != FORMAT_VERSION:
        raise ExportUnreadable(path=path, reason="its first line is not the export header")


def _file_events(f: IO[str], loaded: Loaded, seals: list[Seal]) -> Iterator[StoredEvent]:
    """The events of the lines after the header; seals and the manifest are set aside."""
    for number, line in enumerate(f, start=2):
        if loaded.manifest is not None:
            loaded.problems.append(Problem("after_manifest", f"line {number} follows the manifest"))
            continue
        try:
            value = json.loads(line)
            if "manifest" in value:
                loaded.manifest = Manifest(**value["manifest"])
            elif "seal" in value:
                seals.append(Seal(**value["seal"]))
            elif ARCHIVE in value and number == 2:
                loaded.archive = dict(value[ARCHIVE])
            else:
                yield stored_event(line.encode())
        except (json.JSONDecodeError, TypeError, UndecodableMessage) as error:
            loaded.problems.append(
                Problem("undecodable", f"line {number} is not an event, seal or manifest: {error}")
            )
