"""An example media service's processors: what a team writes to run its own jobs.

    jobtrail worker --app examples.media_service:registry

Three job types, one as a `BaseProcessor` class and two as decorated functions. The work is
simulated (no network, no files): the outputs are storage URLs derived from the input, and
the time a job takes comes from its payload. Everything is imported from `jobtrail`, the
public API.

- ``resize_image`` {"source": URL, "width": px, "height": px, "max_side": px (512)}:
  the size that fits in ``max_side`` keeping the aspect ratio.
- ``generate_thumbnails`` {"source": URL, "duration_s": s, "count": n (4)}: stills spread
  evenly over the video, with progress.
- ``transcode_video`` {"source": URL, "duration_s": s, "renditions": ["1080p", "720p", ...]}:
  one output per rendition, with progress. ``encoder_busy_attempts`` (0) makes that many
  attempts time out at the (simulated) encoder farm, a retryable error.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from jobtrail import BaseProcessor, InvalidInput, JobContext, JobView, Registry, UpstreamTimeout

STORAGE = "s3://media-example"
RENDITIONS: dict[str, tuple[int, int]] = {
    "1080p": (1920, 5000),
    "720p": (1280, 2800),
    "480p": (854, 1400),
    "360p": (640, 800),
}
"""name -> (width in pixels, video bitrate in kbit/s)"""
MAX_THUMBNAILS = 100
SECONDS_PER_RENDITION = 0.02
"""How long one rendition 'encodes' for, so progress and cancellation have time to show."""

registry = Registry()


@registry.processor("resize_image")
def resize_image(job: JobView, ctx: JobContext) -> dict[str, Any]:
    """Scale an image down to fit a square of ``max_side`` pixels; never scale up."""
    source = text(job.payload, "source")
    width, height = positive(job.payload, "width"), positive(job.payload, "height")
    max_side = positive(job.payload, "max_side", 512)
    scale = min(1.0, max_side / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    ctx.logger.info("resizing %s from %gx%g to %dx%d", source, width, height, *size)
    return {"image_url": output_url(job, f"{size[0]}x{size[1]}.jpg"), "size": list(size)}


@registry.processor("generate_thumbnails")
def generate_thumbnails(job: JobView, ctx: JobContext) -> dict[str, Any]:
    """Take ``count`` stills at evenly spaced times, skipping the first and last frame."""
    source = text(job.payload, "source")
    duration = positive(job.payload, "duration_s")
    count = int(positive(job.payload, "count", 4))
    if count > MAX_THUMBNAILS:
        raise InvalidInput(f"at most {MAX_THUMBNAILS} thumbnails, not {count}")
    thumbnails: list[dict[str, Any]] = []
    for n in range(1, count + 1):
        if ctx.cancelled:
            return {"thumbnails": thumbnails, "complete": False}
        at = round(duration * n / (count + 1), 3)
        thumbnails.append({"at_s": at, "url": output_url(job, f"thumb-{n}.jpg")})
        ctx.progress(n * 100 // count, f"still {n} of {count} from {source}")
    return {"thumbnails": thumbnails, "complete": True}


class TranscodeVideo(BaseProcessor):
    """Encode a video into the requested renditions, reporting progress per rendition."""

    job_type = "transcode_video"

    def process(self, job: JobView, ctx: JobContext) -> dict[str, Any]:
        source = text(job.payload, "source")
        duration = positive(job.payload, "duration_s")
        renditions = rendition_names(job.payload)
        if job.attempt <= positive(job.payload, "encoder_busy_attempts", 0, allow_zero=True):
            raise UpstreamTimeout(f"encoder farm did not take {source} (attempt {job.attempt})")
        outputs: list[dict[str, Any]] = []
        for done, name in enumerate(renditions, start=1):
            if ctx.cancelled:
                ctx.logger.info("cancelled after %d rendition(s)", done - 1)
                return {"renditions": outputs, "complete": False}
            time.sleep(SECONDS_PER_RENDITION)
            outputs.append(rendition(job, name, duration))
            ctx.progress(done * 100 // len(renditions), f"{name} encoded")
        return {"renditions": outputs, "complete": True}


registry.register(TranscodeVideo())


def rendition(job: JobView, name: str, duration: float) -> dict[str, Any]:
    width, kbits = RENDITIONS[name]
    return {
        "name": name,
        "width": width,
        "bytes": round(kbits * 1000 / 8 * duration),
        "url": output_url(job, f"{name}.mp4"),
    }


def rendition_names(payload: Mapping[str, Any]) -> list[str]:
    names = payload.get("renditions", ["720p"])
    if not isinstance(names, list) or not names:
        raise InvalidInput("'renditions' must be a non-empty list of names")
    unknown = sorted(str(name) for name in names if name not in RENDITIONS)
    if unknown:
        raise InvalidInput(f"unknown rendition(s) {unknown}; known: {sorted(RENDITIONS)}")
    return list(dict.fromkeys(names))


def text(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"payload field {key!r} must be a non-empty string")
    return value


def positive(
    payload: Mapping[str, Any], key: str, default: float | None = None, *, allow_zero: bool = False
) -> float:
    """A number from the payload: a user error (not retried) when missing or out of range."""
    value = payload.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"payload field {key!r} must be a number, not {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidInput(f"payload field {key!r} must be positive, not {value!r}")
    return float(value)


def output_url(job: JobView, name: str) -> str:
    return f"{STORAGE}/{job.job_type}/{job.id}/{name}"
