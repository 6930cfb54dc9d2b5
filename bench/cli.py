"""How fast the `jobtrail` command answers, against bare Python imports in the same run.

Times `jobtrail --help`, `jobtrail submit` and `jobtrail show` on SQLite (a fresh temporary
directory, `db init` first) as subprocesses, the way a person or a script runs them, and
in the same rounds ``python -c "import argparse"`` and ``python -c "import sqlalchemy"``.
The commands of one round run one after the other, so every one sees the same background
load. Goals (issue 9): `--help` within 4x the argparse baseline, `submit` within 1.3x the
SQLAlchemy one.

Both sides run from bytecode, as an installed package does: the SQLAlchemy of the virtual
environment was compiled when pip installed it, so jobtrail's modules are compiled by the
untimed first round (``PYTHONDONTWRITEBYTECODE`` is dropped from the commands'
environment; with it, every jobtrail module would be compiled from source on every run
while SQLAlchemy's would not).

    python -m bench.cli [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import heading, machine_load, ratio, row, sqlite_url, temp_sqlite

JOB_TYPE = "bench_cli_job"


@dataclass(frozen=True)
class Goal:
    command: str
    baseline: str
    within: float


GOALS = (
    Goal("jobtrail --help", "import argparse", 4.0),
    Goal("jobtrail submit", "import sqlalchemy", 1.3),
)


def jobtrail_command() -> list[str]:
    """The console script beside this interpreter (what users run), else ``python -m``."""
    script = Path(sys.executable).with_name("jobtrail")
    return [str(script)] if script.exists() else [sys.executable, "-m", "jobtrail"]


def run(argv: Sequence[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def timed_run(argv: Sequence[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    run(argv, env, cwd)
    return time.perf_counter() - start


def commands(directory: Path, env: dict[str, str]) -> dict[str, list[str]]:
    """What is timed, by label; creates the schema and one job for `show` first."""
    jobtrail = jobtrail_command()
    run([*jobtrail, "db", "init"], env, directory)
    job_id = run([*jobtrail, "submit", JOB_TYPE], env, directory).strip()
    python = sys.executable
    return {
        "import argparse": [python, "-c", "import argparse"],
        "import sqlalchemy": [python, "-c", "import sqlalchemy"],
        "jobtrail --help": [*jobtrail, "--help"],
        "jobtrail submit": [*jobtrail, "submit", JOB_TYPE, "--payload", '{"n": 1}'],
        "jobtrail show": [*jobtrail, "show", job_id],
    }


def measure_rounds(
    timed: dict[str, list[str]], env: dict[str, str], cwd: Path, runs: int
) -> dict[str, list[float]]:
    """``runs`` rounds of every command, after one untimed round (disk caches, bytecode)."""
    for argv in timed.values():
        run(argv, env, cwd)
    samples: dict[str, list[float]] = {label: [] for label in timed}
    for _ in range(runs):
        for label, argv in timed.items():
            samples[label].append(timed_run(argv, env, cwd))
    return samples


def report(samples: dict[str, list[float]]) -> None:
    best = {label: min(s) for label, s in samples.items()}
    median = {label: statistics.median(s) for label, s in samples.items()}
    runs = len(next(iter(samples.values())))
    heading(f"wall time of one process, best / median of {runs} rounds (SQLite)")
    for label in samples:
        row(label, f"{1000 * best[label]:.0f} / {1000 * median[label]:.0f} ms")
    for baseline in ("import argparse", "import sqlalchemy"):
        heading(f'as a ratio to python -c "{baseline}" (best / median)')
        for label in samples:
            if label.startswith("jobtrail"):
                of_best = ratio(best[label], best[baseline])
                row(label, f"{of_best} / {ratio(median[label], median[baseline])}")
    heading("goals (median)")
    for goal in GOALS:
        measured = median[goal.command] / median[goal.baseline]
        verdict = "met" if measured <= goal.within else "NOT met"
        row(f"{goal.command} <= {goal.within}x {goal.baseline}", f"{measured:.2f}x", verdict)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed rounds of every command")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    print("bench.cli: the jobtrail command's answer time vs bare imports, SQLite")
    machine_load("start")
    with temp_sqlite() as database:
        env = {**os.environ, "JOBTRAIL_DATABASE_URL": sqlite_url(database)}
        env.pop("JOBTRAIL_APP", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        timed = commands(database.parent, env)
        samples = measure_rounds(timed, env, database.parent, args.runs)
    report(samples)
    machine_load("end")


if __name__ == "__main__":
    main()
