"""What `pip install jobtrail` puts on a machine, checked from the source tree.

The wheel is built from an explicit `packages` list and package-data globs in pyproject.toml:
a subpackage or a data file missing from them is silently left out of the wheel while every
test run from the repository still passes. The public API is promised by `jobtrail.__all__`,
and the four folders must only ever be imported as `jobtrail.<folder>` (tests/integration/
test_wheel.py checks the built wheel itself).
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import jobtrail

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS: dict[str, Any] = PYPROJECT["tool"]["setuptools"]
FOLDERS = ("domain", "adapters", "processors", "projections")
HEAVY = ("sqlalchemy", "kafka", "alembic", "psycopg", "rich")
"""Libraries a user's `import jobtrail` or processors module must not pay for."""

PROMISED = {
    # issue 9, point 2: the names `__all__` must keep
    "connect",
    "Jobtrail",
    "JobSpec",
    "Meta",
    "Outcome",
    "JobStatus",
    "RetryPolicy",
    "JobQueued",
    "JobStarted",
    "JobProgressed",
    "JobCompleted",
    "JobRetryScheduled",
    "JobFailed",
    "JobCancelled",
    "JobtrailError",
    "JobNotFound",
    "CommandRejected",
    "InvalidCommand",
    "JobError",
    "UserError",
    "TransientError",
    "InsufficientCredits",
    "InvalidInput",
    "UpstreamTimeout",
    "BaseProcessor",
    "JobContext",
    "JobView",
    "Registry",
    "WorkerSettings",
    "JobEventConsumer",
    "RawEvent",
}


# ---------------------------------------------------------------- the wheel's contents


def package_dirs() -> dict[str, Path]:
    return {name: ROOT / folder for name, folder in SETUPTOOLS["package-dir"].items()}


def files_in(folder: Path) -> list[Path]:
    """The files of `folder` itself, but hidden ones (editors' and the OS's)."""
    return [f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")]


def folders(top: Path) -> list[Path]:
    """`top` and the folders under it that hold files (but caches)."""
    found = [top, *(d for d in top.rglob("*") if d.is_dir())]
    return [d for d in found if "__pycache__" not in d.parts and files_in(d)]


def packages_on_disk() -> set[str]:
    """Every folder with files under a mapped folder, as its installed name.

    setuptools ships files by package, so a folder of data files (kafka/schemas) is a
    package too, and a folder left out of `packages` is left out of the wheel.
    """
    found = set()
    for name, top in package_dirs().items():
        for folder in folders(top):
            found.add(".".join((name, *folder.relative_to(top).parts)))
    return found


def test_the_four_folders_and_jobtrail_are_all_that_is_installed() -> None:
    assert SETUPTOOLS["package-dir"] == {
        "jobtrail": "jobtrail",
        **{f"jobtrail.{folder}": folder for folder in FOLDERS},
    }
    assert all(p == "jobtrail" or p.startswith("jobtrail.") for p in SETUPTOOLS["packages"])


def test_the_packages_list_names_every_package_of_the_tree() -> None:
    listed = set(SETUPTOOLS["packages"])
    on_disk = packages_on_disk()
    assert on_disk - listed == set(), "packages left out of the wheel"
    assert listed - on_disk == set(), "listed packages that do not exist"
    assert len(SETUPTOOLS["packages"]) == len(listed), "a package is listed twice"


def test_every_folder_with_modules_is_a_package() -> None:
    """A folder of modules without `__init__.py` would be a namespace package, a second kind."""
    for top in package_dirs().values():
        for folder in folders(top):
            if any(folder.glob("*.py")):
                assert (folder / "__init__.py").is_file(), f"{folder} has no __init__.py"


def data_files(folder: Path) -> set[Path]:
    """The files of the package in `folder` that are not Python modules."""
    return {path for path in files_in(folder) if path.suffix not in (".py", ".pyc")}


def test_package_data_ships_every_data_file() -> None:
    globs: dict[str, list[str]] = SETUPTOOLS["package-data"]
    for package in SETUPTOOLS["packages"]:
        folder, patterns = folder_of(package), globs.get(package, [])
        for path in data_files(folder):
            relative = path.relative_to(folder).as_posix()
            assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), (
                f"{path.relative_to(ROOT)} is not in package-data of {package}"
            )


def test_the_migrations_template_schemas_and_marker_are_data_files() -> None:
    files = {
        path.relative_to(ROOT).as_posix()
        for name in SETUPTOOLS["packages"]
        for path in data_files(folder_of(name))
    }
    assert {
        "jobtrail/py.typed",
        "adapters/sql/migrations/script.py.mako",
        "adapters/kafka/schemas/job-event.schema.json",
        "adapters/kafka/schemas/asyncapi.yaml",
    } <= files


def folder_of(package: str) -> Path:
    """Where setuptools reads `package` from, following package-dir."""
    mapping = SETUPTOOLS["package-dir"]
    parts = package.split(".")
    for cut in range(len(parts), 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in mapping:
            return ROOT / mapping[prefix] / Path(*parts[cut:])
    raise AssertionError(f"{package} is not under package-dir")


# ---------------------------------------------------------------- the public API


def type_checking_exports() -> dict[str, str]:
    """``name -> module`` of the `import X as X` lines under `if TYPE_CHECKING:`."""
    tree = ast.parse((ROOT / "jobtrail" / "__init__.py").read_text())
    [block] = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    ]
    exports = {}
    for statement in block.body:
        assert isinstance(statement, ast.ImportFrom) and statement.module, ast.unparse(statement)
        for alias in statement.names:
            assert alias.asname == alias.name, f"{alias.name} is not re-exported as itself"
            exports[alias.name] = statement.module
    return exports


def test_all_is_exactly_what_type_checkers_see() -> None:
    assert sorted(jobtrail.__all__) == sorted(type_checking_exports())
    assert len(set(jobtrail.__all__)) == len(jobtrail.__all__)


def test_every_public_name_is_the_object_type_checkers_see() -> None:
    for name, module in type_checking_exports().items():
        assert getattr(jobtrail, name) is getattr(importlib.import_module(module), name), name


def test_all_keeps_what_the_issue_promised() -> None:
    assert PROMISED - set(jobtrail.__all__) == set()


def test_an_unknown_name_is_an_attribute_error() -> None:
    assert not hasattr(jobtrail, "NoSuchThing")


def loaded_after(code: str) -> list[str]:
    """The heavy top-level modules loaded by `code` in a fresh interpreter."""
    script = textwrap.dedent(f"""
        import json, sys
        {code}
        print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))))
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd="/"
    )
    loaded: list[str] = json.loads(result.stdout)
    return loaded


def test_import_jobtrail_loads_no_database_or_broker_library() -> None:
    assert loaded_after("import jobtrail") == []


def test_a_processors_module_loads_no_database_or_broker_library() -> None:
    """What a team's processors import runs on domain/ and processors/ alone."""
    code = (
        "from jobtrail import BaseProcessor, JobContext, JobView, Registry, WorkerSettings,"
        " JobSpec, JobStatus, RetryPolicy, JobQueued, InvalidInput, UpstreamTimeout"
    )
    assert loaded_after(code) == []


# ---------------------------------------------------------------- one name per file

IMPORT_EVERYTHING = """
import importlib, json, os, pkgutil, sys

ROOT = sys.argv[1]
SCRIPTS = {"jobtrail.__main__", "jobtrail.adapters.sql.migrations.env"}  # run, not imported
# The editable install maps the four folders with an import hook, which pkgutil cannot list
# from `jobtrail`'s own __path__: walk each of them from its package.
for top in ("jobtrail", "jobtrail.domain", "jobtrail.adapters", "jobtrail.processors",
            "jobtrail.projections"):
    for module in pkgutil.walk_packages(importlib.import_module(top).__path__, top + "."):
        if module.name not in SCRIPTS:
            importlib.import_module(module.name)
files = {}
for name, module in list(sys.modules.items()):
    path = getattr(module, "__file__", None)
    if path is not None and os.path.realpath(path).startswith(ROOT + os.sep):
        files.setdefault(os.path.realpath(path), []).append(name)
print(json.dumps({"modules": sorted(sys.modules), "files": files}))
"""


def source_files() -> set[str]:
    """Every module file that goes into the wheel, but the scripts Alembic and `-m` run."""
    scripts = {ROOT / "jobtrail" / "__main__.py", ROOT / "adapters/sql/migrations/env.py"}
    return {
        str(path.resolve())
        for folder in package_dirs().values()
        for path in folder.rglob("*.py")
        if path not in scripts
    }


def test_every_module_loads_once_under_its_jobtrail_name() -> None:
    """With the repository on sys.path a bare `import domain…` would succeed: it must not occur."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING, str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, f"a module does not import:\n{result.stderr}"
    report = json.loads(result.stdout)
    bare = [m for m in report["modules"] if m.split(".")[0] in FOLDERS]
    assert bare == [], "modules imported by their folder's name instead of jobtrail.<folder>"
    shared = {path: names for path, names in report["files"].items() if len(names) > 1}
    assert shared == {}, "files loaded as two modules"
    assert source_files() - set(report["files"]) == set(), "modules the walk did not import"
