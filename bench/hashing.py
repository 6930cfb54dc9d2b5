"""The cost of hashing one event, by the previous rule and by RFC 8785 (JCS), in one process.

What an append (`Event.new`) and a replay (`covered_hash` of each stored envelope) pay per
event: the canonical text of the envelope without position and hash, then sha-256 of its
UTF-8 bytes. Events are made by the domain itself, of four kinds: typical ones (a
`JobQueued` with a small payload, a `JobStarted`, a `JobCompleted` with a small result and a
fractional duration) and float-heavy ones (a payload and a result full of floats of every
magnitude, which RFC 8785 writes otherwise than Python); and the whole mix of the log
`bench.replay` verifies (`bench.rebuild.job_history`, 500 jobs: queued, started, progressed,
completed, failed or retried; durations in whole seconds, so every `JobCompleted` has an
integral ``duration_ms``). For each: the legacy rule, JCS as used (the C encoder when its
text is provably JCS, else the exact encoder), and the exact encoder alone. All measured in
the same run, alternating, median of the blocks.

    python -m bench.hashing [--rounds 2000] [--blocks 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from jobtrail.domain.canonical import exact_jcs_text, jcs_text, legacy_text, sha256_hex
from jobtrail.domain.events import Event
from jobtrail.domain.job import Job, Meta

from bench.common import heading, machine_load, ratio, row
from bench.rebuild import job_history

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FLOATS = {
    "fps": 24.0,
    "seconds": 4.0,
    "ratio": 1.7777777777777777,
    "seed": 1e16,
    "scale": 1e-7,
    "strength": 0.00001,
    "offset": -0.0,
    "budget": 1e21,
    "weights": [0.25, 1.0, 2.5e-5, 3.0e17],
}


def events() -> dict[str, Event]:
    """The kinds measured, made by the domain's commands (hashed, chained)."""
    meta = Meta("worker:host-1", "request-1")
    small = Job.submit(
        "00000000-0000-4000-8000-000000000001",
        "shot_video_generation",
        {"shot": 7, "prompt": "a cat on a skateboard", "storyboard": "sb-12"},
        now=T0,
        meta=meta,
    )
    small.start("worker:host-1", 60, now=T0 + timedelta(seconds=1), meta=meta)
    small.complete(
        1,
        {"video": "s3://media/shot-7.mp4", "frames": 96},
        now=T0 + timedelta(seconds=3, microseconds=456_789),
        meta=meta,
    )
    heavy = Job.submit(
        "00000000-0000-4000-8000-000000000002", "shot_video_generation", FLOATS, now=T0
    )
    heavy.start("worker:host-1", 60, now=T0 + timedelta(seconds=1))
    heavy.complete(1, {"metrics": FLOATS, "score": 0.9}, now=T0 + timedelta(seconds=3))
    return {
        "JobQueued, small payload": small.pending[0],
        "JobStarted": small.pending[1],
        "JobCompleted, small result": small.pending[2],
        "JobQueued, float-heavy payload": heavy.pending[0],
        "JobCompleted, float-heavy result": heavy.pending[2],
    }


def covered(event: Event) -> dict[str, Any]:
    """The envelope without position and hash, as a store gives it back (through JSON)."""
    envelope = json.loads(json.dumps(event.envelope()))
    return {k: v for k, v in envelope.items() if k not in ("position", "hash")}


def replay_log() -> list[dict[str, Any]]:
    """The covered envelopes of `bench.replay`'s log, 500 jobs of it."""
    return [covered(event) for index in range(500) for event in job_history(index)]


RULES: dict[str, Callable[[Any], str]] = {
    "legacy": legacy_text,
    "jcs": jcs_text,
    "jcs, exact encoder only": exact_jcs_text,
}


def per_event_us(values: list[dict[str, Any]], encode: Callable[[Any], str], rounds: int) -> float:
    """Microseconds per canonical text + sha-256, over at least ``rounds`` calls."""
    repeat = max(1, rounds // len(values))
    start = time.perf_counter()
    for _ in range(repeat):
        for value in values:
            sha256_hex(encode(value))
    return (time.perf_counter() - start) / (repeat * len(values)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000, help="hashes per block")
    parser.add_argument("--blocks", type=int, default=15, help="alternating blocks per rule")
    args = parser.parse_args()
    print("bench.hashing: canonical text + sha-256 per event, previous rule vs RFC 8785")
    machine_load("start")
    kinds = {name: [covered(event)] for name, event in events().items()}
    kinds["bench.replay's log (mean per event)"] = replay_log()
    samples: dict[tuple[str, str], list[float]] = {
        (kind, rule): [] for kind in kinds for rule in RULES
    }
    for _ in range(args.blocks):
        for kind, value in kinds.items():
            for rule, encode in RULES.items():
                samples[(kind, rule)].append(per_event_us(value, encode, args.rounds))
    for kind in kinds:
        median = {rule: statistics.median(samples[(kind, rule)]) for rule in RULES}
        size = sum(len(jcs_text(value).encode()) for value in kinds[kind]) // len(kinds[kind])
        heading(f"{kind}, {size} bytes of canonical text")
        for rule in RULES:
            row(f"{rule}", f"{median[rule]:.2f} µs/event")
        row("new / old (jcs / legacy)", ratio(median["jcs"], median["legacy"]))
    machine_load("end")


if __name__ == "__main__":
    main()
