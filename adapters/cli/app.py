"""`worker --app module.path:attribute` (or JOBTRAIL_APP): load a team's `Registry`.

As Celery's ``-A`` and Procrastinate's ``--app``: the module is imported with the current
directory on the path (a console script does not put it there, ``python -m`` does), and the
attribute (default ``registry``) is a `Registry` or a function returning one. Every way this
can go wrong is an `AppNotLoaded`, one line for the user, before the worker claims anything;
``-v`` logs the traceback of an import that raised.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from types import ModuleType

from jobtrail.domain.errors import JobtrailError
from jobtrail.processors.registry import Registry

DEFAULT_ATTRIBUTE = "registry"

log = logging.getLogger("jobtrail.app")


class AppNotLoaded(JobtrailError):
    """Cannot load the processors of --app {app}: {reason}."""


def load_registry(app: str) -> Registry:
    """The registry ``app`` names, ``module.path[:attribute]``."""
    module_name, _, attribute = app.partition(":")
    module = import_app_module(module_name, app)
    try:
        value = getattr(module, attribute or DEFAULT_ATTRIBUTE)
    except AttributeError:
        reason = f"module {module_name!r} has no attribute {attribute or DEFAULT_ATTRIBUTE!r}"
        raise AppNotLoaded(app=app, reason=reason) from None
    if callable(value) and not isinstance(value, Registry):
        value = call_factory(value, app)
    if not isinstance(value, Registry):
        reason = f"it is a {type(value).__name__}, not a Registry or a function returning one"
        raise AppNotLoaded(app=app, reason=reason)
    return value


def import_app_module(name: str, app: str) -> ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name == error.name or name.startswith(f"{error.name}.")):
            reason = f"no module named {error.name!r} (searched from {cwd})"
            raise AppNotLoaded(app=app, reason=reason) from None
        raise _raised(app, f"importing {name!r}", error) from None
    except Exception as error:  # the team's code: any error it raises is reported, not shown
        raise _raised(app, f"importing {name!r}", error) from None


def call_factory(factory: Callable[[], object], app: str) -> object:
    try:
        return factory()
    except Exception as error:
        raise _raised(app, "calling it", error) from None


def _raised(app: str, doing: str, error: Exception) -> AppNotLoaded:
    log.debug("%s raised", doing, exc_info=error)
    first_line = (str(error).splitlines() or [""])[0]
    return AppNotLoaded(app=app, reason=f"{doing} raised {type(error).__name__}: {first_line}")
