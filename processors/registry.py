"""Which processor runs which job type."""

from __future__ import annotations

from collections.abc import Iterable

from processors.base import BaseProcessor


class Registry:
    def __init__(self, processors: Iterable[BaseProcessor] = ()) -> None:
        self._processors: dict[str, BaseProcessor] = {}
        for processor in processors:
            self.register(processor)

    def register(self, processor: BaseProcessor) -> None:
        if processor.job_type in self._processors:
            raise ValueError(f"a processor for {processor.job_type!r} is already registered")
        self._processors[processor.job_type] = processor

    def get(self, job_type: str) -> BaseProcessor | None:
        return self._processors.get(job_type)


def default_registry() -> Registry:
    """The sample processors, named after the product's job types."""
    from processors.samples import AssetImageGeneration, ShotVideoGeneration

    return Registry([ShotVideoGeneration(), AssetImageGeneration()])
