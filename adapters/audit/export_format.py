"""The export file format: what the writer (`export`) and the reader (`file_source`) agree on.

An export is JSON lines: a header line ``{"jobtrail_export": 1}``, one event envelope per
line in position order (the same JSON the topic carries), one ``{"seal": …}`` line per
seal, and a last ``{"manifest": {"count", "last_position", "digest"}}`` line. A file cut
short has no manifest, and replay says so.

An archive (`archive`) is an export of some jobs' whole histories: after the header comes an
``{"archive": {...}}`` line (the seal it is cut at), then those jobs' events in position
order, no seals (they cover the events left in the log too), and a manifest that also gives
the jobs and the first position. ``digest`` folds the file's own events, as in an export.
"""

from __future__ import annotations

from dataclasses import dataclass

FORMAT_VERSION = 1
HEADER = "jobtrail_export"
"""The key of the first line; its value is the format's version."""
ARCHIVE = "archive"
"""The key of an archive's second line."""


@dataclass(frozen=True)
class Manifest:
    """What an export file says about itself (its last line)."""

    count: int
    last_position: int
    digest: str
    jobs: int | None = None
    """An archive's: the whole histories it holds."""
    first_position: int | None = None
    """An archive's: the position of its first event."""
