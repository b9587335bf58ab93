"""Strict reading of inbound JSON: bounded, typed, with machine-readable reasons.

Two readers of one contract. The typed one (``Text``, ``HubId``, ``typed_payload`` and the
cores' input Structs) decodes a well-formed input in one msgspec pass straight into a Struct:
the path every good input takes. An input it refuses, for whatever reason, is read again by the
field checks below (``json_object``, ``text_field``, ...), which say why: the reasons and
messages of ``ast.rejected.<stage>`` are theirs, unchanged. The typed reader accepts nothing the
field checks would refuse (its limits are the constants here), so both give the same event.
"""

from __future__ import annotations

import binascii
from typing import Annotated, Any, Literal, overload

import msgspec

from services.runtime.service import Inbound
from shared.events import DspReceivedSource, RejectedInput
from shared.timefmt import TimestampError, parse_csp


class InvalidInput(ValueError):
    """Input a stage cannot use. ``reason`` is machine-readable, the message is for people."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_json = msgspec.json.Decoder()
UINT32_MAX = 2**32 - 1
#: The longest identifier a text field may hold (characters).
MAX_TEXT = 128

#: A non-empty string of at most ``MAX_TEXT`` characters (``text_field``'s rule, typed).
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]
#: ``commsHubId``: an unsigned 32-bit integer (``comms_hub_id``'s rule, typed).
HubId = Annotated[int, msgspec.Meta(ge=0, le=UINT32_MAX)]
#: A non-empty string (``base64_payload`` checks its length and alphabet after the decode).
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


def json_object(data: bytes, *, max_bytes: int, max_depth: int) -> dict[str, Any]:
    if len(data) > max_bytes:
        raise InvalidInput("oversize", f"message of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    if not data.strip():
        raise InvalidInput("bad_json", "empty message")
    try:
        value = _json.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidInput("bad_json", f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInput("bad_json", f"expected a JSON object, got {type(value).__name__}")
    if _depth(value, max_depth) > max_depth:
        raise InvalidInput("too_deep", f"JSON nested deeper than {max_depth} levels")
    return value


def _depth(value: Any, limit: int, level: int = 1) -> int:
    if level > limit:
        return level
    deepest = level
    children = value.values() if isinstance(value, dict) else value
    for child in children:
        if isinstance(child, (dict, list)):
            deepest = max(deepest, _depth(child, limit, level + 1))
            if deepest > limit:
                break
    return deepest


def text_field(obj: dict[str, Any], name: str, *, max_len: int = MAX_TEXT) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidInput("missing_field" if value is None else "bad_field",
                           f"`{name}` must be a non-empty string")
    if len(value) > max_len:
        raise InvalidInput("bad_field", f"`{name}` is longer than {max_len} characters")
    return value


def optional_text(obj: dict[str, Any], name: str, *, max_len: int = MAX_TEXT) -> str | None:
    if obj.get(name) is None:
        return None
    return text_field(obj, name, max_len=max_len)


def comms_hub_id(obj: dict[str, Any]) -> int:
    value = obj.get("commsHubId")
    if value is None:
        raise InvalidInput("missing_field", "`commsHubId` is missing")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= UINT32_MAX:
        raise InvalidInput("bad_comms_hub_id", f"`commsHubId` must be an unsigned 32-bit integer, got {value!r:.40}")
    return value


@overload
def timestamp(obj: dict[str, Any], name: str, *, required: Literal[True]) -> int: ...


@overload
def timestamp(obj: dict[str, Any], name: str, *, required: bool) -> int | None: ...


def timestamp(obj: dict[str, Any], name: str, *, required: bool) -> int | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise InvalidInput("missing_field", f"`{name}` is missing")
        return None
    try:
        return parse_csp(value)
    except TimestampError as exc:
        raise InvalidInput("bad_timestamp", f"`{name}`: {exc}") from None


def base64_payload(obj: dict[str, Any], *, max_chars: int) -> tuple[str, bytes]:
    value = obj.get("payload")
    if not isinstance(value, str) or not value:
        raise InvalidInput("missing_field" if value is None else "bad_field",
                           "`payload` must be a non-empty Base64 string")
    if len(value) > max_chars:
        raise InvalidInput("oversize_payload",
                           f"`payload` of {len(value)} characters exceeds the {max_chars}-character limit")
    try:
        raw = binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("bad_base64", f"`payload` is not Base64: {exc}") from None
    return value, raw


def typed_payload(value: str, *, max_chars: int) -> bool:
    """Whether a decoded ``payload`` passes ``base64_payload`` (length and strict Base64)."""
    if len(value) > max_chars:
        return False
    try:
        binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        return False
    return True


def typed_timestamp(value: str | None) -> int | None:
    """A decoded optional timestamp as ``timestamp`` reads it (``TimestampError`` if bad)."""
    return None if value is None else parse_csp(value)


DSP_RECEIVED_HEADER = "Dsp-Received-Timestamp"
TRACE_HEADER = "traceparent"


def dsp_received_of(msg: Inbound) -> tuple[int, DspReceivedSource]:
    header = msg.headers.get(DSP_RECEIVED_HEADER)
    if header is None:
        return msg.stream_time_ms, "stream"
    try:
        return parse_csp(header), "header"
    except TimestampError as exc:
        raise InvalidInput("bad_timestamp", f"header {DSP_RECEIVED_HEADER}: {exc}") from None


def reject(msg: Inbound, reason: str, message: str, stage: str) -> RejectedInput:
    """The input whole, with why. The id comes from the stream position: a redelivery of
    the same message is the same rejection, two equal bad messages are two rejections."""
    try:
        dsp_received = dsp_received_of(msg)[0]
    except InvalidInput:
        dsp_received = msg.stream_time_ms
    return RejectedInput(
        event_id=f"rej:{stage}:{msg.subject}:{msg.stream_seq}",
        stage=stage,
        reason=reason,
        message=message,
        subject=msg.subject,
        headers=msg.headers,
        raw=msg.data,
        source_seq=msg.stream_seq,
        dsp_received=dsp_received,
    )
