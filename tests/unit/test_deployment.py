"""docker-compose.yml and the Dockerfile agree with the code (Docker itself cannot run here).

Every jobtrail service's command must parse with the real CLI parser, every JOBTRAIL_*
variable it sets must be one the code reads (jobtrail.adapters.config.VARIABLES), and every
depends_on must name a service that can satisfy its condition.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from jobtrail.adapters import config
from jobtrail.adapters.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
JOBTRAIL_SERVICES = sorted(name for name, s in SERVICES.items() if "build" in s)
NOT_HERE_YET = {"relay": "part 1 of issue 4, built on the lead's branch"}


def subcommands() -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def argv_of(service: dict[str, Any]) -> list[str]:
    entrypoint = service.get("entrypoint", dockerfile_entrypoint())
    return [*entrypoint, *service["command"]]


def dockerfile_entrypoint() -> list[str]:
    [line] = [
        line
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("ENTRYPOINT")
    ]
    entrypoint: list[str] = json.loads(line.removeprefix("ENTRYPOINT"))
    return entrypoint


def test_the_image_runs_the_jobtrail_cli() -> None:
    assert dockerfile_entrypoint() == ["jobtrail"]
    assert 'jobtrail = "jobtrail.adapters.cli.main:main"' in (ROOT / "pyproject.toml").read_text()
    assert {"db-init", "worker", "relay"} <= set(JOBTRAIL_SERVICES)


@pytest.mark.parametrize("name", JOBTRAIL_SERVICES)
def test_each_jobtrail_service_runs_a_real_cli_command(name: str) -> None:
    argv = argv_of(SERVICES[name])
    assert argv[0] == "jobtrail", argv
    command = argv[1]
    if command not in subcommands() and command in NOT_HERE_YET:
        pytest.skip(f"`jobtrail {command}` is not on this branch yet: {NOT_HERE_YET[command]}")
    try:
        args = cli.parser().parse_args(argv[1:])
    except SystemExit as exit:
        pytest.fail(f"service {name}: `{' '.join(argv)}` is not a valid command (exit {exit})")
    assert callable(args.handler)


def test_the_schema_step_runs_once_before_the_workers() -> None:
    assert argv_of(SERVICES["db-init"])[1:] == ["db", "init"]
    assert SERVICES["db-init"]["restart"] == "no"
    condition = SERVICES["worker"]["depends_on"]["db-init"]["condition"]
    assert condition == "service_completed_successfully"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_jobtrail_variable_a_service_sets_is_read_by_the_code(name: str) -> None:
    environment = SERVICES[name].get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    ours = {key for key in environment if key.startswith("JOBTRAIL_")}
    assert ours <= set(config.VARIABLES), f"{name}: unknown {sorted(ours - set(config.VARIABLES))}"
    if name in JOBTRAIL_SERVICES:
        assert config.DATABASE_URL_VAR in ours, f"{name} would use the SQLite default"


def test_the_addresses_in_the_environment_name_services_of_the_file() -> None:
    environment = SERVICES["relay"]["environment"]
    database_host = urlsplit(environment[config.DATABASE_URL_VAR]).hostname
    kafka_host = environment[config.KAFKA_BOOTSTRAP_VAR].split(",")[0].rsplit(":", 1)[0]
    assert {database_host, kafka_host} <= set(SERVICES)


def test_the_list_of_variables_is_what_the_configuration_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = (ROOT / "adapters" / "config.py").read_text()
    assert set(re.findall(r'"(JOBTRAIL_[A-Z_]+)"', source)) == set(config.VARIABLES)
    default = config.Settings.from_env()
    for variable in config.VARIABLES:
        monkeypatch.setenv(variable, "set-by-the-test")
        assert config.Settings.from_env() != default, f"{variable} changes nothing"
        monkeypatch.delenv(variable)


def dependencies(service: dict[str, Any]) -> dict[str, str]:
    depends = service.get("depends_on", {})
    if isinstance(depends, list):  # the short form means "started"
        return dict.fromkeys(depends, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in depends.items()}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_depends_on_names_services_that_can_meet_the_condition(name: str) -> None:
    for target, condition in dependencies(SERVICES[name]).items():
        assert target in SERVICES, f"{name} depends on a missing service {target}"
        other = SERVICES[target]
        if condition == "service_healthy":
            assert other.get("healthcheck", {}).get("test"), f"{target} has no healthcheck"
        elif condition == "service_completed_successfully":
            assert other.get("restart", "no") == "no", f"{target} restarts: it never completes"
        else:
            assert condition == "service_started", f"{name}: unknown condition {condition}"


def test_postgres_and_kafka_report_their_health() -> None:
    for name in ("postgres", "kafka"):
        assert SERVICES[name]["healthcheck"]["test"][0] == "CMD-SHELL"
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
