"""The one lifecycle Machine: legal moves, illegal moves, terminal states, no model registry."""

from __future__ import annotations

import gc
import itertools
import weakref
from dataclasses import dataclass

import pytest
from jobtrail.domain import lifecycle
from jobtrail.domain.errors import CommandRejected, IllegalTransition
from jobtrail.domain.lifecycle import (
    MACHINE,
    NEW,
    TRANSITIONS,
    allows,
    fire,
    next_status,
    status_after,
)
from jobtrail.domain.status import TERMINAL_STATUSES, JobStatus


@dataclass
class Model:
    """Anything with a ``status`` attribute can be moved by the machine."""

    status: str


def _sources(entry: dict[str, object]) -> list[str]:
    source = entry["source"]
    return list(source) if isinstance(source, list) else [str(source)]


STATES: list[str] = [NEW, *(s.value for s in JobStatus)]
TRIGGERS: list[str] = sorted({str(t["trigger"]) for t in TRANSITIONS})
LEGAL: list[tuple[str, str, str | None]] = [
    (source, str(entry["trigger"]), entry["dest"])
    for entry in TRANSITIONS
    for source in _sources(entry)
]
LEGAL_PAIRS = {(source, trigger) for source, trigger, _ in LEGAL}
ILLEGAL: list[tuple[str, str]] = [
    (state, trigger)
    for state, trigger in itertools.product(STATES, TRIGGERS)
    if (state, trigger) not in LEGAL_PAIRS
]

# The lifecycle of the design brief, written out independently of jobtrail.domain.lifecycle.
DESIGN_TABLE = {
    ("new", "submit", "queued"),
    ("queued", "start", "processing"),
    ("processing", "progress", None),
    ("processing", "complete", "completed"),
    ("processing", "schedule_retry", "queued"),
    ("queued", "fail", "failed"),
    ("processing", "fail", "failed"),
    ("queued", "cancel", "cancelled"),
    ("processing", "cancel", "cancelled"),
}


def test_table_is_the_designed_lifecycle() -> None:
    assert set(LEGAL) == DESIGN_TABLE
    assert len(LEGAL) == len(DESIGN_TABLE)


def test_machine_states_are_new_plus_every_status() -> None:
    assert set(MACHINE.states) == set(STATES)
    assert MACHINE.initial == NEW


def test_machine_transitions_match_the_table() -> None:
    from_machine = {
        (source, trigger, transition.dest)
        for trigger, event in MACHINE.events.items()
        for source, transitions in event.transitions.items()
        for transition in transitions
    }
    assert from_machine == set(LEGAL)


@pytest.mark.parametrize(("source", "trigger", "dest"), LEGAL)
def test_legal_transition_moves_the_status(source: str, trigger: str, dest: str | None) -> None:
    model = Model(status=source)
    fire(model, trigger)
    assert model.status == (source if dest is None else dest)


@pytest.mark.parametrize(("source", "trigger", "dest"), LEGAL)
def test_next_status_reads_the_same_transition_the_machine_fires(
    source: str, trigger: str, dest: str | None
) -> None:
    """Commands record through `next_status`; it must lead where firing leads."""
    model = Model(status=source)
    fire(model, trigger)
    assert next_status(source, trigger) == model.status


@pytest.mark.parametrize(("state", "trigger"), ILLEGAL)
def test_next_status_refuses_what_the_machine_refuses(state: str, trigger: str) -> None:
    with pytest.raises(IllegalTransition):
        next_status(state, trigger)


@pytest.mark.parametrize(("source", "trigger", "dest"), LEGAL)
def test_allows_every_legal_transition(source: str, trigger: str, dest: str | None) -> None:
    assert allows(source, trigger)


def test_there_are_illegal_combinations_for_every_state() -> None:
    # 6 states x 7 triggers, 9 of them legal.
    assert len(ILLEGAL) == len(STATES) * len(TRIGGERS) - len(LEGAL_PAIRS) == 33
    assert {state for state, _ in ILLEGAL} == set(STATES)


@pytest.mark.parametrize(("state", "trigger"), ILLEGAL)
def test_illegal_transition_raises_and_leaves_status(state: str, trigger: str) -> None:
    model = Model(status=state)
    with pytest.raises(IllegalTransition) as raised:
        fire(model, trigger)
    assert model.status == state
    assert raised.value.status == state
    assert raised.value.command == trigger
    message = str(raised.value)
    assert state in message
    assert trigger in message
    assert isinstance(raised.value, CommandRejected)


@pytest.mark.parametrize(("state", "trigger"), ILLEGAL)
def test_allows_refuses_illegal_combinations(state: str, trigger: str) -> None:
    assert not allows(state, trigger)


@pytest.mark.parametrize("state", sorted(s.value for s in TERMINAL_STATUSES))
def test_terminal_states_have_no_way_out(state: str) -> None:
    assert state in {"completed", "failed", "cancelled"}
    for trigger in MACHINE.events:
        assert not allows(state, trigger), trigger
        model = Model(status=state)
        with pytest.raises(IllegalTransition):
            fire(model, trigger)
        assert model.status == state


def test_no_auto_transitions() -> None:
    assert set(MACHINE.events) == set(TRIGGERS)
    assert not any(name.startswith("to_") for name in MACHINE.events)
    with pytest.raises(KeyError):
        fire(Model(status="processing"), "to_failed")


def test_firing_does_not_register_models() -> None:
    models = [Model(status=NEW) for _ in range(500)]
    for model in models:
        for trigger in ("submit", "start", "progress", "complete"):
            fire(model, trigger)
    assert all(model.status == "completed" for model in models)
    assert MACHINE.models == []
    assert not hasattr(models[0], "trigger")
    assert not hasattr(models[0], "to_failed")


def test_the_machine_keeps_no_reference_to_a_job() -> None:
    model = Model(status=NEW)
    fire(model, "submit")
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


STATUS_AFTER: dict[str, JobStatus | None] = {
    "submit": JobStatus.QUEUED,
    "start": JobStatus.PROCESSING,
    "progress": None,
    "complete": JobStatus.COMPLETED,
    "schedule_retry": JobStatus.QUEUED,
    "fail": JobStatus.FAILED,
    "cancel": JobStatus.CANCELLED,
}


def test_status_after_is_specified_for_every_trigger() -> None:
    assert set(STATUS_AFTER) == set(TRIGGERS)


@pytest.mark.parametrize(("trigger", "expected"), STATUS_AFTER.items())
def test_status_after(trigger: str, expected: JobStatus | None) -> None:
    assert status_after(trigger) == expected


def test_new_is_not_a_stored_status() -> None:
    assert lifecycle.NEW not in {s.value for s in JobStatus}
