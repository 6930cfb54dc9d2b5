"""The export file format: what the writer (`export`) and the reader (`file_source`) agree on.

An export is JSON lines: a header line ``{"jobtrail_export": 1}``, one event envelope per
line in position order (the same JSON the topic carries), one ``{"seal": …}`` line per
seal, and a last ``{"manifest": {"count", "last_position", "digest"}}`` line. A file cut
short has no manifest, and replay says so.
"""

from __future__ import annotations

from dataclasses import dataclass

FORMAT_VERSION = 1
HEADER = "jobtrail_export"
"""The key of the first line; its value is the format's version."""


@dataclass(frozen=True)
class Manifest:
    """What an export file says about itself (its last line)."""

    count: int
    last_position: int
    digest: str
