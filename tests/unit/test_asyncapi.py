"""The AsyncAPI document of the topic agrees with the code and with the JSON Schema."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import jobtrail.adapters.kafka
import yaml
from jobtrail.adapters.kafka.codec import encode
from jobtrail.domain.events import EVENT_TYPES
from jsonschema import Draft7Validator, Draft202012Validator

from tests.unit.histories import completed

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

SCHEMAS = Path(jobtrail.adapters.kafka.__file__).parent / "schemas"


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((SCHEMAS / "asyncapi.yaml").read_text())
    return loaded


def resolve(root: dict[str, Any], ref: str) -> Any:
    """Follow a `file#/pointer` or `#/pointer` reference, relative to the schemas folder."""
    file, _, pointer = ref.partition("#")
    node: Any = json.loads((SCHEMAS / file).read_text()) if file else root
    for part in filter(None, pointer.split("/")):
        assert isinstance(node, dict) and part in node, f"{ref}: no {part!r}"
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def test_it_is_asyncapi_3_with_one_message_per_event_type() -> None:
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    [channel] = doc["channels"].values()
    assert channel["address"] == "job-events"
    assert set(channel["messages"]) == set(EVENT_TYPES)
    assert {op["action"] for op in doc["operations"].values()} == {"send", "receive"}


def test_every_reference_resolves() -> None:
    doc = document()
    found = refs(doc)
    assert len(found) > len(EVENT_TYPES) * 2
    for ref in found:
        resolve(doc, ref)


def test_each_message_payload_is_the_schema_of_its_own_event_type() -> None:
    """The shape @asyncapi/parser keeps whole: an allOf of the envelope and the type's own
    fields (a `$ref` with keywords beside it would lose them), declared as draft-07."""
    doc = document()
    for name, message in doc["components"]["messages"].items():
        payload = message["payload"]
        assert payload["schemaFormat"] == "application/schema+json;version=draft-07"
        assert payload["schema"] == {"$ref": f"./job-event.schema.json#/$defs/{name}"}
        target = resolve(doc, payload["schema"]["$ref"])
        envelope, own = target["allOf"]
        assert envelope == {"$ref": "#/$defs/Envelope"}
        assert own["properties"] == {
            "type": {"const": name},
            "data": {"$ref": f"#/$defs/{name}Data"},
        }


DRAFT_2020_ONLY = {
    "$anchor",
    "$dynamicAnchor",
    "$dynamicRef",
    "dependentRequired",
    "dependentSchemas",
    "maxContains",
    "minContains",
    "prefixItems",
    "unevaluatedItems",
    "unevaluatedProperties",
}


def nodes(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        return [node] + [n for value in node.values() for n in nodes(value)]
    if isinstance(node, list):
        return [n for value in node for n in nodes(value)]
    return []


def test_the_schema_means_the_same_in_draft_07_as_the_payloads_declare() -> None:
    """No 2020-12-only keyword, and no keyword beside a `$ref` (draft-07 ignores those and
    the AsyncAPI parser drops them): a draft-07 validator reads each `$defs/<Type>` as the
    2020-12 one does."""
    schema = json.loads((SCHEMAS / "job-event.schema.json").read_text())
    for node in nodes(schema["$defs"]):
        assert not DRAFT_2020_ONLY & set(node), node
        if "$ref" in node:
            assert set(node) == {"$ref"}, f"keywords beside $ref: {node}"
    record = json.loads(encode(completed().pending[-1]).value)
    record.update(position=1, job_id=str(uuid.uuid4()))
    for name in EVENT_TYPES:
        validator = Draft7Validator(
            {"$defs": schema["$defs"], "allOf": [{"$ref": f"#/$defs/{name}"}]}
        )
        errors = list(validator.iter_errors(record))
        assert (errors == []) is (name == record["type"]), (name, [e.message for e in errors])


def test_the_documented_headers_are_the_ones_the_codec_writes() -> None:
    headers_schema = document()["components"]["messageTraits"]["jobEvent"]["headers"]
    event = completed().pending[-1]
    record = encode(event)
    headers = {name: value.decode() for name, value in record.headers}
    assert set(headers) == set(headers_schema["required"])
    assert list(Draft202012Validator(headers_schema).iter_errors(headers)) == []
    traced = encode(replace(event, traceparent=TRACEPARENT))  # the one optional header
    headers = {name: value.decode() for name, value in traced.headers}
    assert (
        set(headers)
        == set(headers_schema["properties"])
        == {*headers_schema["required"], "traceparent"}
    )
    assert list(Draft202012Validator(headers_schema).iter_errors(headers)) == []
