"""Which processor runs which job type: `BaseProcessor` instances and decorated functions.

A team's processors module holds one `Registry`; ``jobtrail worker --app module:attribute``
runs it. Mistakes are refused when the module is imported (a job type registered twice, a
class instead of an instance, a function that cannot take ``(job, ctx)``, an async
generator), not when the first job of that type fails.

A processor is async when its ``process`` (or the decorated function) is ``async def``;
the registry says which job types are (`is_async`), so the worker runs them on its event
loop and starts the loop only when there is one.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeVar

from jobtrail.processors.base import BaseProcessor, JobContext, JobView

ProcessorFunction = Callable[[JobView, JobContext], Any]
"""``f(job, ctx)``, a plain function or an ``async def`` one."""
F = TypeVar("F", bound=ProcessorFunction)


class FunctionProcessor(BaseProcessor):
    """A plain function run as a processor; it raises and reports progress as a class would."""

    def __init__(self, job_type: str, function: ProcessorFunction) -> None:
        check_function(job_type, function)
        self.job_type = job_type
        self.function = function

    def process(self, job: JobView, ctx: JobContext) -> Any:
        return self.function(job, ctx)

    def __repr__(self) -> str:
        name = getattr(self.function, "__qualname__", repr(self.function))
        return f"{type(self).__name__}({self.job_type!r}, {name})"


class AsyncFunctionProcessor(FunctionProcessor):
    """An ``async def`` function run as a processor, on the worker's event loop."""

    async def process(self, job: JobView, ctx: JobContext) -> Any:
        awaitable: Awaitable[Any] = self.function(job, ctx)
        return await awaitable


def function_processor(job_type: str, function: ProcessorFunction) -> FunctionProcessor:
    """The processor that runs ``function``: async if it is ``async def``."""
    kind = AsyncFunctionProcessor if is_async_callable(function) else FunctionProcessor
    return kind(job_type, function)


class Registry:
    """The processors a worker runs, by job type; a worker's `--app` names one of these.

    A processors module makes one (``registry = Registry()``), decorates its functions with
    ``@registry.processor("resize_image")`` and adds its classes with
    ``registry.register(TranscodeVideo())``.
    """

    def __init__(self, processors: Iterable[BaseProcessor] = ()) -> None:
        self._processors: dict[str, BaseProcessor] = {}
        self._async: set[str] = set()
        for processor in processors:
            self.register(processor)

    def register(self, processor: BaseProcessor) -> BaseProcessor:
        """Add a processor instance; a job type has one processor."""
        if isinstance(processor, type):
            raise TypeError(f"register an instance, {processor.__name__}(), not the class")
        if not isinstance(processor, BaseProcessor):
            raise TypeError(f"{processor!r} is not a BaseProcessor")
        job_type = check_job_type(getattr(processor, "job_type", None), type(processor).__name__)
        if job_type in self._processors:
            raise ValueError(
                f"job type {job_type!r} already has a processor: {self._processors[job_type]!r}"
            )
        process = getattr(processor, "process", None)
        if inspect.isasyncgenfunction(process):
            raise TypeError(
                f"{type(processor).__name__}.process is an async generator; an async "
                "processor is an `async def` that returns its result"
            )
        self._processors[job_type] = processor
        if is_async_callable(process) or (
            isinstance(processor, FunctionProcessor) and is_async_callable(processor.function)
        ):
            self._async.add(job_type)
        return processor

    def processor(self, job_type: str) -> Callable[[F], F]:
        """Register the decorated function ``f(job, ctx)`` for `job_type`; it stays callable."""
        if callable(job_type):
            raise TypeError('name the job type: @registry.processor("job_type")')

        def register(function: F) -> F:
            self.register(function_processor(job_type, function))
            return function

        return register

    def get(self, job_type: str) -> BaseProcessor | None:
        return self._processors.get(job_type)

    def is_async(self, job_type: str) -> bool:
        """Whether the job type's processor is ``async def`` (run on the event loop)."""
        return job_type in self._async

    @property
    def has_async(self) -> bool:
        """Whether any processor is async: a worker starts its event loop only then."""
        return bool(self._async)

    @property
    def job_types(self) -> list[str]:
        return sorted(self._processors)

    def __contains__(self, job_type: object) -> bool:
        return job_type in self._processors

    def __iter__(self) -> Iterator[BaseProcessor]:
        return iter(self._processors.values())

    def __len__(self) -> int:
        return len(self._processors)

    def __repr__(self) -> str:
        return f"Registry({', '.join(self.job_types)})"


def check_job_type(job_type: object, owner: str) -> str:
    if not isinstance(job_type, str) or not job_type.strip():
        raise TypeError(f"{owner}.job_type must be a non-empty string, not {job_type!r}")
    return job_type


def check_function(job_type: str, function: object) -> None:
    """Refuse what would fail every job of `job_type` at run time."""
    check_job_type(job_type, "a function processor")
    if not callable(function):
        raise TypeError(f"processor for {job_type!r} is not callable: {function!r}")
    if inspect.isasyncgenfunction(function):
        raise TypeError(
            f"processor for {job_type!r} is an async generator; an async processor is an "
            "`async def` that returns its result"
        )
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # some builtins have no signature: trust them
        return
    try:
        signature.bind(None, None)
    except TypeError:
        raise TypeError(
            f"processor for {job_type!r} must take (job, ctx); {function!r} takes {signature}"
        ) from None


def is_async_callable(function: object) -> bool:
    """``async def`` functions and methods, partials of them, and objects whose
    ``__call__`` is one."""
    if inspect.iscoroutinefunction(function):
        return True
    call = inspect.getattr_static(type(function), "__call__", None)
    return inspect.iscoroutinefunction(call)


def default_registry() -> Registry:
    """The sample processors, named after the product's job types."""
    from jobtrail.processors.samples import AssetImageGeneration, ShotVideoGeneration

    return Registry([ShotVideoGeneration(), AssetImageGeneration()])
