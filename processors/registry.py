"""Which processor runs which job type: `BaseProcessor` instances and decorated functions."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from jobtrail.processors.base import BaseProcessor, JobContext, JobView

ProcessorFunction = Callable[[JobView, JobContext], Any]


class FunctionProcessor(BaseProcessor):
    """A plain function run as a processor; it raises and reports progress as a class would."""

    def __init__(self, job_type: str, function: ProcessorFunction) -> None:
        self.job_type = job_type
        self.function = function

    def process(self, job: JobView, ctx: JobContext) -> Any:
        return self.function(job, ctx)

    def __repr__(self) -> str:
        return f"FunctionProcessor({self.job_type!r}, {self.function.__qualname__})"


class Registry:
    """The processors a worker runs, by job type; a worker's `--app` names one of these."""

    def __init__(self, processors: Iterable[BaseProcessor] = ()) -> None:
        self._processors: dict[str, BaseProcessor] = {}
        for processor in processors:
            self.register(processor)

    def register(self, processor: BaseProcessor) -> None:
        if processor.job_type in self._processors:
            raise ValueError(f"a processor for {processor.job_type!r} is already registered")
        self._processors[processor.job_type] = processor

    def processor(self, job_type: str) -> Callable[[ProcessorFunction], ProcessorFunction]:
        """Register the decorated function ``f(job, ctx)`` for `job_type`; it stays callable."""

        def register(function: ProcessorFunction) -> ProcessorFunction:
            self.register(FunctionProcessor(job_type, function))
            return function

        return register

    def get(self, job_type: str) -> BaseProcessor | None:
        return self._processors.get(job_type)

    @property
    def job_types(self) -> list[str]:
        return sorted(self._processors)


def default_registry() -> Registry:
    """The sample processors, named after the product's job types."""
    from jobtrail.processors.samples import AssetImageGeneration, ShotVideoGeneration

    return Registry([ShotVideoGeneration(), AssetImageGeneration()])
