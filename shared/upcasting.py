"""Reading events written under an older schema: upcasters keyed by ``(type, v)``.

Every event carries its schema version ``v``; the current version of a type is the default of
``v`` in its struct (``shared/events.py``), so a schema change is written there once. When a
type changes, raise that default and add an upcaster here for the version before: a pure
function taking the event as a dict at version ``n`` and returning it as it reads at ``n + 1``
(the reader sets ``v``). A week of log written before the change is then read as today's events.

``EventReader`` is the one decoding path of envelopes read back from the log. A message whose
events are all at their current version costs one comparison per event beyond msgspec's typed
decode; only a message holding an older (or undecodable) event is decoded again as plain data,
upcast step by step, and converted. A version newer than this build knows is refused with
``UnknownSchemaVersion`` (a ``msgspec.DecodeError``, so it is rejected like any unreadable
envelope).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, get_args

import msgspec

from shared.events import AnyEvent, Batch, RejectedInput, batch_decoder

#: One step: the event (a dict) at version ``n`` -> the same event at version ``n + 1``.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

#: ``(type, n)`` -> the step from version ``n`` of that event type. Empty while every type is at
#: the version it was first written with.
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


class UnknownSchemaVersion(msgspec.DecodeError):
    """An event (or envelope) at a version this build has no way to read."""


def _default_v(cls: type[msgspec.Struct]) -> int:
    for field in msgspec.structs.fields(cls):
        if field.name == "v" and isinstance(field.default, int):
            return field.default
    raise TypeError(f"{cls.__name__} has no default schema version v")


def current_versions(types: Iterable[type[msgspec.Struct]]) -> dict[str, int]:
    """Each event type's tag -> its current version (the default of its ``v``)."""
    return {str(cls.__struct_config__.tag): _default_v(cls) for cls in types}


EVENT_TYPES: tuple[type[msgspec.Struct], ...] = get_args(AnyEvent)
#: Event type -> its current schema version.
CURRENT: dict[str, int] = current_versions(EVENT_TYPES)
#: The envelope's own version.
BATCH_VERSION = _default_v(Batch)

_rejected_decoder = msgspec.json.Decoder(RejectedInput)
_plain = msgspec.json.Decoder()


class EventReader:
    """Decodes envelopes and rejections of any known version into today's events."""

    def __init__(self, upcasters: Mapping[tuple[str, int], Upcaster] = UPCASTERS,
                 current: Mapping[str, int] = CURRENT) -> None:
        self.upcasters = dict(upcasters)
        self.current = dict(current)
        for (kind, version) in self.upcasters:
            if kind not in self.current or version >= self.current[kind]:
                raise ValueError(f"upcaster ({kind!r}, {version}): {kind} is at version {self.current.get(kind)}")
        self._current_of_class = {cls: self.current[str(cls.__struct_config__.tag)] for cls in EVENT_TYPES}

    def upcast(self, event: dict[str, Any]) -> dict[str, Any]:
        """One event as plain data, brought to its type's current version (an unknown type is
        left as it is for the typed conversion to refuse)."""
        kind = event.get("type")
        if not isinstance(kind, str) or kind not in self.current:
            return event
        current = self.current[kind]
        version = event.get("v", current)  # no ``v``: the struct's default, as a typed decode reads it
        while version != current:
            step = self.upcasters.get((kind, version)) if isinstance(version, int) else None
            if step is None:
                newer = isinstance(version, int) and version > current
                raise UnknownSchemaVersion(
                    f"{kind} schema version {version!r}: "
                    + (f"newer than this build reads (up to {current})" if newer
                       else f"no upcaster from it (current {current})"))
            version += 1
            event = {**step(event), "v": version}
        return event

    def batch(self, data: bytes) -> list[AnyEvent]:
        """The events of one envelope. Raises msgspec.DecodeError when it cannot be read."""
        try:
            envelope = batch_decoder.decode(data)
        except msgspec.DecodeError as exc:
            return self._upcast_batch(data, exc)
        if envelope.v == BATCH_VERSION:
            current = self._current_of_class
            for event in envelope.events:
                if event.v != current[event.__class__]:
                    break
            else:
                return envelope.events
        return self._upcast_batch(data, None)

    def rejection(self, data: bytes) -> RejectedInput:
        """One rejection (``ast.rejected.*``, ``ast.dead-letter.*``). Raises msgspec.DecodeError."""
        try:
            event = _rejected_decoder.decode(data)
        except msgspec.DecodeError as exc:
            return self._upcast_one(data, exc)
        if event.v == self.current["rejected_input"]:
            return event
        return self._upcast_one(data, None)

    def _upcast_batch(self, data: bytes, error: msgspec.DecodeError | None) -> list[AnyEvent]:
        raw = self._plain(data, error)
        events = raw.get("events") if isinstance(raw, dict) else None
        if not isinstance(raw, dict) or not isinstance(events, list):
            raise error or msgspec.DecodeError("not a batch envelope")
        if raw.get("v", BATCH_VERSION) != BATCH_VERSION:
            raise UnknownSchemaVersion(f"batch envelope version {raw.get('v')!r}: this build reads {BATCH_VERSION}")
        upcast = [self.upcast(e) if isinstance(e, dict) else e for e in events]
        if error is not None and upcast == events:
            raise error  # nothing older in it: the typed decode's own reason stands
        return msgspec.convert({**raw, "events": upcast}, Batch).events

    def _upcast_one(self, data: bytes, error: msgspec.DecodeError | None) -> RejectedInput:
        raw = self._plain(data, error)
        if not isinstance(raw, dict):
            raise error or msgspec.DecodeError("not a rejection")
        event = {"type": "rejected_input", **raw}
        upcast = self.upcast(event)
        if error is not None and upcast == event:
            raise error  # nothing older in it: the typed decode's own reason stands
        return msgspec.convert(upcast, RejectedInput)

    @staticmethod
    def _plain(data: bytes, error: msgspec.DecodeError | None) -> Any:
        try:
            return _plain.decode(data)
        except msgspec.DecodeError:
            if error is None:
                raise
            raise error from None


#: The reader of the log, with this module's upcasters.
reader = EventReader()
