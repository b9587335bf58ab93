"""Reading the AsyncAPI document in tests: references resolved, a message's payload schema as a validator."""

from __future__ import annotations

import jsonschema


def resolve(doc: dict, ref: str) -> dict:
    node: object = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]  # type: ignore[index]
    assert isinstance(node, dict)
    return node


def message_of(doc: dict, channel_id: str, name: str | None = None) -> dict:
    """The channel's message ``name`` (default: its first, the one it is named for)."""
    messages = doc["channels"][channel_id]["messages"]
    ref = messages[name] if name else next(iter(messages.values()))
    return resolve(doc, ref["$ref"])


def validator(doc: dict, schema: dict) -> jsonschema.Draft202012Validator:
    """A schema of the document made standalone: its component references resolve in place."""
    standalone = {**schema, "components": {"schemas": doc["components"]["schemas"]}}
    jsonschema.Draft202012Validator.check_schema(standalone)
    return jsonschema.Draft202012Validator(standalone)
