"""The dashboard: a Starlette app of server-rendered pages over one `Jobtrail`.

Read-only unless made with ``allow_actions`` and a token: cancel and retry are POST forms
that must carry the token (form field ``token`` or ``Authorization: Bearer``), compared in
constant time; anything else is a 403 page. Pages run as plain functions in Starlette's
thread pool (SQLAlchemy is synchronous). Errors are pages of one line: 400 for bad input,
404 for an unknown job or page, 403, 409 for a refused command, 503 when the database is
down, 500 (logged with its traceback, never shown) for anything else.
"""

from __future__ import annotations

import hmac
import json
import logging
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.web import charts, params
from jobtrail.adapters.web.params import BadInput
from jobtrail.adapters.web.queries import DashboardQueries
from jobtrail.adapters.web.rollup import LatencyRollup
from jobtrail.domain.errors import (
    DatabaseUnavailable,
    InvalidCommand,
    InvalidJobId,
    JobNotFound,
    JobtrailError,
)
from jobtrail.domain.job import Meta
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

log = logging.getLogger(__name__)

MAX_FORM = 64 * 1024


class Forbidden(Exception):
    """An action without the token, or with actions off."""


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("jobtrail.adapters.web", "templates"),
        autoescape=select_autoescape(["html"]),
    )
    env.filters["when"] = lambda m: "" if m is None else params.iso(m)
    env.filters["json"] = lambda v: json.dumps(v, indent=2, sort_keys=True, ensure_ascii=False)
    env.filters["seconds"] = lambda v: "" if v is None else f"{v:.3f}"
    env.filters["percent"] = lambda v: f"{v:.1%}"
    return env


class Dashboard:
    """The pages; each reads what it shows through `DashboardQueries`."""

    def __init__(self, trail: Jobtrail, allow_actions: bool, token: str | None) -> None:
        if allow_actions and not token:
            raise ValueError("actions need a token")
        self.trail = trail
        self.queries = DashboardQueries(trail.engine)
        self.rollup = LatencyRollup(self.queries)
        self.allow_actions = allow_actions
        self.token = token or ""
        self.templates = Jinja2Templates(env=_environment())

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        header = context.pop("header", True)
        if header:
            context["counts"] = self.queries.status_counts()
            context["lag"] = self.queries.relay_lag()
        context["allow_actions"] = self.allow_actions
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    # ------------------------------------------------------------------ pages

    def jobs(self, request: Request) -> Response:
        where = params.job_filter(request.query_params)
        rows = self.queries.jobs(where)
        following = None
        if len(rows) == where.limit:
            last = rows[-1]
            cursor = {"before": params.iso(last["created_at"]), "before_id": last["id"]}
            following = "/jobs?" + urllib.parse.urlencode({**where.query(), **cursor})
        return self.render(
            request, "jobs.html", rows=rows, where=where, following=following, statuses=STATUSES
        )

    def job(self, request: Request) -> Response:
        job_id = params.job_id(request.path_params["job_id"])
        row = self.queries.job(job_id)
        if row is None:
            raise JobNotFound(job_id=job_id)
        history = self.queries.history(job_id)
        return self.render(
            request,
            "job.html",
            row=row,
            history=history,
            retries=self.queries.retries_of(job_id),
            attempts=_attempts(history.records),
        )

    def failures(self, request: Request) -> Response:
        window = params.window(request.query_params, datetime.now(UTC))
        chart = charts.failure_chart(window, self.queries.failures(window))
        return self.render(
            request,
            "failures.html",
            window=window,
            chart=chart,
            svg=charts.failure_svg(chart),
            iso=params.iso,
        )

    def latency(self, request: Request) -> Response:
        window = params.window(request.query_params, datetime.now(UTC))
        durations = self.rollup.latency(window)  # the SQL path until the rollup is built
        if durations is None:
            durations = self.queries.latency(window)
        kinds = {kind: charts.latency_rows(window, durations, kind) for kind in ("wait", "run")}
        svgs = {
            kind: charts.latency_svg(rows, f"{kind} time percentiles")
            for kind, rows in kinds.items()
        }
        return self.render(
            request, "latency.html", window=window, kinds=kinds, svgs=svgs, iso=params.iso
        )

    def counts(self, request: Request) -> Response:
        lag = [{"topic": x.topic, "behind": x.behind} for x in self.queries.relay_lag()]
        return JSONResponse({"counts": self.queries.status_counts(), "lag": lag})

    # ------------------------------------------------------------------ actions

    async def cancel(self, request: Request) -> Response:
        return await self.act(request, "cancel")

    async def retry(self, request: Request) -> Response:
        return await self.act(request, "retry")

    async def act(self, request: Request, action: str) -> Response:
        form = await _form(request)
        self._authorise(request, form)  # before anything else is said about the request
        job_id = params.job_id(request.path_params["job_id"])
        meta = Meta(actor=form.get("actor", "").strip() or "web")
        reason = form.get("reason", "").strip() or None
        if action == "cancel":
            await run_in_threadpool(self.trail.cancel, job_id, reason, meta)
            log.info("web: %s cancelled job %s", meta.actor, job_id)
            return RedirectResponse(f"/jobs/{job_id}", status_code=303)
        new_id = await run_in_threadpool(self.trail.retry, job_id, reason, meta)
        log.info("web: %s retried job %s as %s", meta.actor, job_id, new_id)
        return RedirectResponse(f"/jobs/{new_id}", status_code=303)

    def _authorise(self, request: Request, form: Mapping[str, str]) -> None:
        if not self.allow_actions:
            raise Forbidden("actions are off: start the dashboard with --allow-actions --token")
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else form.get("token", "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise Forbidden("a valid token is needed for actions")


STATUSES = ("queued", "processing", "completed", "failed", "cancelled")


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form (no multipart: the forms are ours)."""
    body = await request.body()
    if len(body) > MAX_FORM:
        raise BadInput("the form is too large")
    fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[-1] for key, values in fields.items()}


def _attempts(records: list[Any]) -> list[dict[str, Any]]:
    """Each attempt: when it started, on which worker, and how it ended."""
    attempts: dict[int, dict[str, Any]] = {}
    for record in records:
        attempt = record.data.get("attempt") if isinstance(record.data, dict) else None
        if not isinstance(attempt, int) or attempt < 1:
            continue
        entry = attempts.setdefault(attempt, {"attempt": attempt, "outcome": None})
        if record.type == "JobStarted":
            entry.update(started=record.occurred_at, worker=record.data.get("worker_id"))
        elif record.type != "JobProgressed":
            entry.update(ended=record.occurred_at, outcome=record.type)
            entry["error"] = record.data.get("error_code")
    return [attempts[a] for a in sorted(attempts)]


# ---------------------------------------------------------------------- errors

ERRORS: tuple[tuple[type[BaseException], int], ...] = (
    (BadInput, 400),
    (InvalidJobId, 400),
    (Forbidden, 403),
    (JobNotFound, 404),
    (InvalidCommand, 409),
    (DatabaseUnavailable, 503),
    (JobtrailError, 409),
)


def _error_page(dashboard: Dashboard) -> Callable[[Request, Exception], Response]:
    def page(request: Request, error: Exception) -> Response:
        if isinstance(error, HTTPException):
            status, message = error.status_code, str(error.detail)
        else:
            status = next((code for kind, code in ERRORS if isinstance(error, kind)), 500)
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if status == 500:
            log.exception("web: %s %s failed", request.method, request.url.path, exc_info=error)
            message = "internal error (logged on the server)"
        return dashboard.render(
            request, "error.html", status, header=False, code=status, message=message
        )

    return page


def create_app(trail: Jobtrail, allow_actions: bool = False, token: str | None = None) -> Starlette:
    """The dashboard over ``trail``; actions (cancel, retry) only with both arguments."""
    d = Dashboard(trail, allow_actions, token)
    routes = [
        Route("/", d.jobs),
        Route("/jobs", d.jobs),
        Route("/jobs/{job_id}", d.job),
        Route("/jobs/{job_id}/cancel", d.cancel, methods=["POST"]),
        Route("/jobs/{job_id}/retry", d.retry, methods=["POST"]),
        Route("/charts/failures", d.failures),
        Route("/charts/latency", d.latency),
        Route("/api/counts", d.counts),
    ]
    handler = _error_page(d)
    handlers: dict[Any, Any] = {kind: handler for kind, _ in ERRORS}
    handlers.update({HTTPException: handler, Exception: handler})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        d.rollup.start()  # built in the background: the first chart need not wait for it
        yield
        d.rollup.stop()

    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.state.dashboard = d
    return app
