"""Sample processors that simulate the product's generation jobs from their payload.

Payload fields (all optional):

- ``credits`` (10) and ``cost`` (1): credits < cost raises `InsufficientCredits`;
- ``duration_ms`` (50): how long the work takes, reporting progress on the way;
- ``fail_times`` (0): the first N attempts raise a retryable `UpstreamTimeout`;
- ``crash`` (false): raise a plain `RuntimeError`, an error nobody expected.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from jobtrail.domain.errors import InsufficientCredits, InvalidInput, UpstreamTimeout
from jobtrail.processors.base import BaseProcessor, JobContext, JobView

STEPS = 10


class SimulatedGeneration(BaseProcessor):
    """Checks credits, fails or crashes on request, then 'renders' for a while."""

    output: str = "output"

    def process(self, job: JobView, ctx: JobContext) -> Any:
        credits, cost = number(job.payload, "credits", 10), number(job.payload, "cost", 1)
        if credits < cost:
            raise InsufficientCredits(f"insufficient credits: {credits:g} left, {cost:g} needed")
        if job.payload.get("crash", False):
            raise RuntimeError("simulated crash in the renderer")
        if job.attempt <= number(job.payload, "fail_times", 0):
            raise UpstreamTimeout(f"upstream timed out (attempt {job.attempt})")
        step = number(job.payload, "duration_ms", 50) / 1000 / STEPS
        for done in range(1, STEPS + 1):
            if ctx.cancelled:
                ctx.logger.info("job %s cancelled; stopping", job.id)
                return None
            time.sleep(step)
            ctx.progress(done * 100 // STEPS, f"step {done} of {STEPS}")
        return {self.output: f"s3://jobtrail-demo/{job.job_type}/{job.id}", "cost": cost}


class ShotVideoGeneration(SimulatedGeneration):
    job_type = "shot_video_generation"
    output = "video_url"


class AssetImageGeneration(SimulatedGeneration):
    job_type = "asset_image_generation"
    output = "image_url"


def number(payload: Mapping[str, Any], key: str, default: float) -> float:
    value = payload.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"payload field {key!r} must be a number, not {value!r}")
    return float(value)
