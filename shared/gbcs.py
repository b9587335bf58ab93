"""GBCS message decoding and encoding: the parts that alert timing needs.

A smart-meter alert reaches the DSP as Base64 of a GBCS message. Byte layout::

    [MAC header]  DD 00 00 00 00 00 00, BER length, security header 11 + 4-byte
                  invocation counter; the protected data ends with a 12-byte MAC.
    general-signing
                  DF 09, CRA flag (01 command, 02 response, 03 alert),
                  originator counter (8 bytes, big-endian),
                  08 + originator system title (EUI-64),
                  08 + recipient system title (EUI-64),
                  date-time (00 when absent, else 0C + 12-byte COSEM date-time),
                  other-information (BER length; starts with the 2-byte message code),
                  content (BER length + bytes),
                  signature (00, or 40 + 64-byte ECDSA signature).

A **pre-command** (what the DCC hands back to a Service User to sign) is a
command without MAC header that ends with its content: it has no signature
length byte at all. It decodes with ``pre_command`` True; any other message
that ends at its content is truncated.

BER lengths: ``< 0x80`` in one byte, ``81 xx``, ``82 xx xx`` (``83``/``84``
accepted too). Non-minimal forms such as ``82 00 DE`` occur in real messages.

Only for alerts is the content looked into, for the alert code and time:

* DLMS (electricity): ``0F`` + 4-byte invoke id + date-time (``00``), then a
  structure ``02 nn`` whose element 0 is ``12 <code>`` and element 1, when it is
  a 12-byte octet string ``09 0C``, the COSEM date-time of the alert.
* GBZ (gas): ``01 09``, component count, 2-byte alert code, 4-byte UTC time in
  seconds since 2000-01-01 (``FFFFFFFF`` = not set).
* ASN.1 (e.g. future-dated alerts): ``30 <len>`` whose first element is the
  alert code as an INTEGER, ``02 03 00 8F 66``. Such payloads carry no
  device alert time in this model (``alert_time`` is None).
* Content that is itself general-ciphering (``DD ...``) is encrypted: the header
  still decodes, ``encrypted`` is True and the alert code is unknown (None).

COSEM date-time: year(2) month day day-of-week hour minute second hundredths
deviation(2) clock-status. Deviation ``0x8000`` means "not specified": the time
is taken as UTC. Otherwise it is, as the DLMS Blue Book defines it, the minutes
from local time to UTC, so ``UTC = local time + deviation``. A date-time with
wildcards (``FF``) in year, month, day, hour or minute names no single instant
and yields None; ``FF`` seconds or hundredths count as 0.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

import msgspec

__all__ = [
    "ACB_EUI",
    "CONTENT_FORMATS",
    "NETWORK_OPERATOR_EUI",
    "SUPPLIER_EUI",
    "ContentFormat",
    "GbcsError",
    "GbcsMessage",
    "ber_length",
    "build_alert",
    "build_response",
    "decode",
    "decode_item",
    "encode",
    "eui_bytes",
    "format_eui",
    "is_alert",
    "is_to_acb",
    "normalize_eui",
]

ACB_EUI: Final = "90-B3-D5-1F-30-00-00-02"
"""The DCC Access Control Broker: Device Alerts addressed to it are for the DSP itself."""
SUPPLIER_EUI: Final = "90-B3-D5-1F-30-01-00-00"
NETWORK_OPERATOR_EUI: Final = "90-B3-D5-1F-30-02-00-00"

ContentFormat = Literal["dlms", "gbz", "asn1", "none", "encrypted"]
CONTENT_FORMATS: Final[tuple[str, ...]] = ("dlms", "gbz", "asn1", "none", "encrypted")

_UTC: Final = UTC
_GBZ_EPOCH: Final = datetime(2000, 1, 1, tzinfo=_UTC)
_GBZ_TIME_NOT_SET: Final = 0xFFFFFFFF

_TAG_GENERAL_CIPHERING: Final = 0xDD
_TAG_GENERAL_SIGNING: Final = 0xDF
_TAG_DLMS_DATA_NOTIFICATION: Final = 0x0F
_TAG_ASN1_SEQUENCE: Final = 0x30
_SECURITY_AUTH_ONLY: Final = 0x11
_SECURITY_AUTH_ENCRYPTED: Final = 0x31
_MAC_LENGTH: Final = 12
_SIGNATURE_LENGTH: Final = 64
_SECURITY_HEADER_LENGTH: Final = 5
_EMPTY_CIPHERING_FIELDS: Final = bytes(6)

_CRA_NAMES: Final = {1: "command", 2: "response", 3: "alert"}
_CRA_FLAGS: Final = {name: flag for flag, name in _CRA_NAMES.items()}

# DF 09 cra counter(8) 08 eui(8) 08 eui(8) = 29 bytes, then at least
# date-time(1) + other-information(1 + 2) + content length(1) + signature length(1);
# a pre-command has no signature length byte.
_FIXED_HEADER_LENGTH: Final = 29
_MIN_SIGNED_LENGTH: Final = _FIXED_HEADER_LENGTH + 6
_MIN_PRE_COMMAND_LENGTH: Final = _FIXED_HEADER_LENGTH + 5


class GbcsError(ValueError):
    """The input is not a GBCS message this decoder understands; the message says why."""


class GbcsMessage(msgspec.Struct, frozen=True):
    """What alert timing needs from one GBCS message."""

    cra_flag: str
    """``"command"``, ``"response"`` or ``"alert"``."""
    originator_counter: int
    originator: str
    """EUI-64 of the originator, e.g. ``"90-B3-D5-1F-30-00-00-02"``."""
    recipient: str
    message_code: str
    """First two bytes of other-information, four upper-case hex digits, e.g. ``"00CC"``."""
    alert_code: str | None
    """Four upper-case hex digits, None when the message carries none we can read."""
    alert_time: datetime | None
    """The device's own date-time of the alert (UTC), where the payload carries one."""
    mac_header: bool
    encrypted: bool
    pre_command: bool = False
    """True for an unsigned pre-command: a command, no MAC header, no signature length byte."""


def is_alert(msg: GbcsMessage) -> bool:
    """True for a Device Alert (CRA flag 03)."""
    return msg.cra_flag == "alert"


def is_to_acb(msg: GbcsMessage) -> bool:
    """True when the message is addressed to the DCC Access Control Broker."""
    return msg.recipient == ACB_EUI


# --------------------------------------------------------------------------- decoding


def decode(data: bytes) -> GbcsMessage:
    """Decode one binary GBCS message. Raises only :class:`GbcsError` on bad input."""
    if type(data) is not bytes:
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data)
        else:
            raise GbcsError(f"expected bytes, got {type(data).__name__}")
    end = len(data)
    if end == 0:
        raise GbcsError("empty message")
    first = data[0]
    if first == _TAG_GENERAL_SIGNING:
        return _decode_signed(data, 0, end, False)
    if first == _TAG_GENERAL_CIPHERING:
        pos, apdu_end = _unwrap_mac_header(data, end)
        return _decode_signed(data, pos, apdu_end, True)
    raise GbcsError(
        f"unknown frame: first byte 0x{first:02X}, expected DD (MAC header) or DF (general signing)"
    )


def _unwrap_mac_header(data: bytes, end: int) -> tuple[int, int]:
    """Check the MAC header; return where the general-signing block starts and ends."""
    if end < 8:
        raise GbcsError(f"truncated MAC header: {end} bytes")
    if data[1:7] != _EMPTY_CIPHERING_FIELDS:
        raise GbcsError(
            "MAC header must start DD 00 00 00 00 00 00; found DD " + data[1:7].hex(" ").upper()
        )
    length, pos = _read_length(data, 7, end, "MAC header length")
    if pos + length != end:
        if pos + length > end:
            raise GbcsError(
                f"MAC header length {length} runs past the end of the message ({end - pos} bytes follow)"
            )
        raise GbcsError(f"{end - pos - length} unexpected bytes after the MAC")
    if length < _SECURITY_HEADER_LENGTH + _MIN_SIGNED_LENGTH + _MAC_LENGTH:
        raise GbcsError(f"MAC-protected data too short: {length} bytes")
    security = data[pos]
    if security != _SECURITY_AUTH_ONLY:
        raise GbcsError(
            f"security header 0x{security:02X} not supported: the GBCS MAC header uses 0x11"
        )
    return pos + _SECURITY_HEADER_LENGTH, end - _MAC_LENGTH


def _read_length(data: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    """Read a BER length at ``pos`` (bounded by ``end``); return (length, next position)."""
    if pos >= end:
        raise GbcsError(f"truncated: {what} missing at offset {pos}")
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    size = first - 0x80
    if size == 0 or size > 4:
        raise GbcsError(f"unsupported BER length form 0x{first:02X} for {what} at offset {pos}")
    if pos + 1 + size > end:
        raise GbcsError(f"truncated: {what} at offset {pos}")
    return int.from_bytes(data[pos + 1 : pos + 1 + size], "big"), pos + 1 + size


def format_eui(raw: bytes) -> str:
    """Eight bytes as ``"90-B3-D5-1F-30-00-00-02"``."""
    return raw.hex("-").upper()


def _decode_signed(data: bytes, pos: int, end: int, mac_header: bool) -> GbcsMessage:
    if end - pos < _MIN_PRE_COMMAND_LENGTH:
        raise GbcsError(
            f"truncated general-signing block: {max(end - pos, 0)} bytes, at least {_MIN_PRE_COMMAND_LENGTH} needed"
        )
    if data[pos] != _TAG_GENERAL_SIGNING or data[pos + 1] != 0x09:
        raise GbcsError(
            f"expected general-signing DF 09 at offset {pos}, found {data[pos:pos + 2].hex(' ').upper()}"
        )
    cra = data[pos + 2]
    cra_flag = _CRA_NAMES.get(cra)
    if cra_flag is None:
        raise GbcsError(f"unknown CRA flag 0x{cra:02X} (01 command, 02 response, 03 alert)")
    counter = int.from_bytes(data[pos + 3 : pos + 11], "big")
    if data[pos + 11] != 8:
        raise GbcsError(f"originator system title length {data[pos + 11]}, expected 8")
    originator = data[pos + 12 : pos + 20].hex("-").upper()
    if data[pos + 20] != 8:
        raise GbcsError(f"recipient system title length {data[pos + 20]}, expected 8")
    recipient = data[pos + 21 : pos + 29].hex("-").upper()
    pos += _FIXED_HEADER_LENGTH

    date_time_length = data[pos]  # pos < end: the minimum length was checked above
    if date_time_length == 0:
        pos += 1
    elif date_time_length == 12:
        pos += 13
    else:
        raise GbcsError(f"grouping header date-time length {date_time_length}, expected 0 or 12")

    if pos < end and data[pos] < 0x80:
        other_length = data[pos]
        pos += 1
    else:
        other_length, pos = _read_length(data, pos, end, "other-information length")
    if other_length < 2:
        raise GbcsError(f"other-information length {other_length}: the message code needs 2 bytes")
    if pos + other_length > end:
        raise GbcsError(f"other-information length {other_length} runs past the end of the message")
    message_code = data[pos : pos + 2].hex().upper()
    pos += other_length

    if pos < end and data[pos] < 0x80:
        content_length = data[pos]
        pos += 1
    else:
        content_length, pos = _read_length(data, pos, end, "content length")
    content_start = pos
    content_end = pos + content_length
    if content_end > end:
        raise GbcsError(
            f"content length {content_length} runs past the end of the message ({end - pos} bytes left)"
        )

    pre_command = content_end == end
    if pre_command:
        if cra != 1 or mac_header:
            raise GbcsError(
                "truncated: signature length missing (only a pre-command, a command without "
                "MAC header, ends at its content)"
            )
    else:
        signature_length = data[content_end]
        if signature_length != 0 and signature_length != _SIGNATURE_LENGTH:
            raise GbcsError(f"signature length {signature_length}, expected 0 or 64")
        rest = end - content_end - 1
        if rest != signature_length:
            if rest < signature_length:
                raise GbcsError(f"truncated signature: {rest} of {signature_length} bytes")
            raise GbcsError(f"{rest - signature_length} unexpected bytes after the signature")

    alert_code = None
    alert_time = None
    encrypted = False
    if content_length:
        tag = data[content_start]
        if tag == _TAG_GENERAL_CIPHERING:
            encrypted = True
        elif cra == 3:
            if tag == _TAG_DLMS_DATA_NOTIFICATION:
                alert_code, alert_time = _dlms_alert(data, content_start, content_end)
            elif tag == 0x01 and content_length > 1 and data[content_start + 1] == 0x09:
                alert_code, alert_time = _gbz_alert(data, content_start, content_end)
            elif tag == _TAG_ASN1_SEQUENCE:
                alert_code = _asn1_alert_code(data, content_start, content_end)
    return GbcsMessage(
        cra_flag,
        counter,
        originator,
        recipient,
        message_code,
        alert_code,
        alert_time,
        mac_header,
        encrypted,
        pre_command,
    )


def _dlms_alert(data: bytes, pos: int, end: int) -> tuple[str, datetime | None]:
    """DLMS data-notification: 0F, invoke id(4), date-time, structure {12 code, 09 0C time, ...}."""
    pos += 5
    if pos >= end:
        raise GbcsError("truncated DLMS alert: data-notification header")
    date_time_length = data[pos]
    if date_time_length == 0:
        pos += 1
    elif date_time_length == 12:
        pos += 13
    else:
        raise GbcsError(f"DLMS data-notification date-time length {date_time_length}, expected 0 or 12")
    if pos + 5 > end:
        raise GbcsError("truncated DLMS alert: no alert code")
    if data[pos] != 0x02:
        raise GbcsError(f"DLMS alert body is not a structure (tag 0x{data[pos]:02X})")
    elements = data[pos + 1]
    if elements == 0:
        raise GbcsError("DLMS alert body is an empty structure")
    if data[pos + 2] != 0x12:
        raise GbcsError(
            f"DLMS alert code is not long-unsigned (tag 0x{data[pos + 2]:02X}, expected 0x12)"
        )
    alert_code = data[pos + 3 : pos + 5].hex().upper()
    pos += 5
    if elements == 1:
        return alert_code, None
    if pos + 2 > end:
        raise GbcsError("truncated DLMS alert: structure element 1 missing")
    if data[pos] != 0x09 or data[pos + 1] != 12:
        return alert_code, None  # element 1 is not a date-time
    if pos + 14 > end:
        raise GbcsError("truncated DLMS alert: COSEM date-time")
    return alert_code, _cosem_date_time(data, pos + 2)


def _cosem_date_time(data: bytes, pos: int) -> datetime | None:
    """The 12-byte COSEM date-time at ``pos`` as a UTC datetime (None for wildcards)."""
    year = data[pos] << 8 | data[pos + 1]
    month = data[pos + 2]
    day = data[pos + 3]
    hour = data[pos + 5]
    minute = data[pos + 6]
    second = data[pos + 7]
    hundredths = data[pos + 8]
    deviation = data[pos + 9] << 8 | data[pos + 10]
    if year == 0xFFFF or month >= 0xFD or day >= 0xFD or hour == 0xFF or minute == 0xFF:
        return None  # a pattern (wildcards), not one instant
    if second == 0xFF:
        second = 0
    if hundredths == 0xFF:
        hundredths = 0
    if hour > 23 or minute > 59 or second > 59 or hundredths > 99:
        raise GbcsError(
            f"invalid COSEM date-time: time {hour:02d}:{minute:02d}:{second:02d}.{hundredths:02d}"
        )
    try:
        moment = datetime(year, month, day, hour, minute, second, hundredths * 10_000, _UTC)
    except ValueError:
        raise GbcsError(f"invalid COSEM date-time: date {year:04d}-{month:02d}-{day:02d}") from None
    if deviation != 0x8000:
        if deviation >= 0x8000:
            deviation -= 0x10000
        if not -720 <= deviation <= 720:
            raise GbcsError(f"invalid COSEM date-time: deviation {deviation} minutes")
        if deviation:
            try:
                moment += timedelta(minutes=deviation)
            except OverflowError:
                raise GbcsError("invalid COSEM date-time: out of range after deviation") from None
    return moment


def _gbz_alert(data: bytes, pos: int, end: int) -> tuple[str, datetime | None]:
    """GBZ alert header: 01 09, component count, alert code(2), UTC seconds since 2000 (4)."""
    if pos + 9 > end:
        raise GbcsError("truncated GBZ alert header")
    alert_code = data[pos + 3 : pos + 5].hex().upper()
    seconds = int.from_bytes(data[pos + 5 : pos + 9], "big")
    if seconds == _GBZ_TIME_NOT_SET:
        return alert_code, None
    return alert_code, _GBZ_EPOCH + timedelta(seconds=seconds)


def _asn1_alert_code(data: bytes, pos: int, end: int) -> str | None:
    """ASN.1 SEQUENCE whose first element is the alert code as an INTEGER."""
    length, pos = _read_length(data, pos + 1, end, "ASN.1 alert SEQUENCE length")
    sequence_end = pos + length
    if sequence_end > end:
        raise GbcsError(f"ASN.1 alert SEQUENCE length {length} runs past the end of the content")
    if pos >= sequence_end or data[pos] != 0x02:
        return None  # not the alert-code-first shape
    if pos + 2 > sequence_end:
        raise GbcsError("truncated ASN.1 alert code")
    size = data[pos + 1]
    if size < 1 or size > 3:
        raise GbcsError(f"ASN.1 alert code INTEGER of {size} bytes, expected 1 to 3")
    if pos + 2 + size > sequence_end:
        raise GbcsError("truncated ASN.1 alert code")
    value = int.from_bytes(data[pos + 2 : pos + 2 + size], "big", signed=True)
    if not 0 <= value <= 0xFFFF:
        raise GbcsError(f"ASN.1 alert code {value} is not a 16-bit alert code")
    return f"{value:04X}"


def decode_item(text: str) -> GbcsMessage:
    """Decode a GBCS message given as hex (whitespace allowed) or Base64 text."""
    if not isinstance(text, str):
        raise GbcsError(f"expected text, got {type(text).__name__}")
    compact = "".join(text.split())
    if not compact:
        raise GbcsError("empty item: expected a GBCS message as hex or Base64")
    frame_starts = (_TAG_GENERAL_CIPHERING, _TAG_GENERAL_SIGNING)
    from_hex: bytes | None = None
    if len(compact) % 2 == 0:
        try:
            from_hex = bytes.fromhex(compact)
        except ValueError:
            from_hex = None
    if from_hex is not None and from_hex[0] in frame_starts:
        return decode(from_hex)
    from_base64 = _base64_bytes(compact)
    if from_base64 and from_base64[0] in frame_starts:
        return decode(from_base64)
    if from_hex is not None:
        return decode(from_hex)  # hex, but not a GBCS frame: decode() says why
    if compact.strip("0123456789abcdefABCDEF") == "":
        raise GbcsError(f"odd number of hex digits ({len(compact)}): {_preview(compact)}")
    if from_base64:
        raise GbcsError(
            f"not a GBCS message: not hex, and as Base64 it starts with byte 0x{from_base64[0]:02X} "
            f"(expected DD or DF): {_preview(compact)}"
        )
    raise GbcsError(f"not hex and not Base64: {_preview(compact)}")


def _base64_bytes(compact: str) -> bytes | None:
    if not compact.isascii():
        return None
    altchars = b"-_" if ("-" in compact or "_" in compact) else None
    padded = compact + "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(padded, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        return None


def _preview(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


# --------------------------------------------------------------------------- encoding


def encode(
    msg: GbcsMessage,
    *,
    content_format: ContentFormat | None = None,
    content: bytes | None = None,
    extra: bytes = b"",
    signature: bytes | None = None,
    date_time: datetime | None = None,
    supplementary: bytes = b"",
    deviation: int | None = None,
    payload_time: datetime | None = None,
    mac: bytes | None = None,
) -> bytes:
    """Build the binary GBCS message that :func:`decode` turns back into ``msg``.

    ``content_format`` picks the content layout; by default: ``"encrypted"``
    when ``msg.encrypted``, ``"none"`` for messages without an alert code,
    ``"dlms"`` when there is an alert time, else ``"asn1"``.

    * ``content``: raw content bytes used as they are (no layout is generated).
    * ``extra``: bytes added to the generated content (DLMS: a further octet-string
      element; GBZ: one component; ASN.1: an OCTET STRING in the SEQUENCE;
      encrypted: the ciphertext; none: the whole content). Large values make the
      BER lengths take their long forms.
    * ``signature``: 64 bytes, or None for an unsigned message (signature length 00;
      a ``pre_command`` has no signature length byte at all).
    * ``date_time``: the grouping header date-time (absent when None).
    * ``supplementary``: other-information bytes after the message code.
    * ``deviation``: DLMS alert time written as local time with this deviation
      (minutes, ``UTC = local + deviation``); None writes UTC with 0x8000.
    * ``payload_time``: GeneralizedTime written after the ASN.1 alert code.
    * ``mac``: the 12-byte MAC when ``msg.mac_header`` (default: a digest of the data).
    """
    cra = _CRA_FLAGS.get(msg.cra_flag)
    if cra is None:
        raise ValueError(f"cra_flag must be command, response or alert, not {msg.cra_flag!r}")
    if not 0 <= msg.originator_counter < 1 << 64:
        raise ValueError(f"originator_counter {msg.originator_counter} does not fit in 8 bytes")
    originator = eui_bytes(msg.originator)
    recipient = eui_bytes(msg.recipient)
    message_code = _code_bytes(msg.message_code, "message_code")

    if content is None:
        fmt = content_format or _default_format(msg)
        content = _build_content(msg, fmt, extra, deviation, payload_time)
    elif content_format is not None:
        raise ValueError("give either content or content_format, not both")

    date_time_field = b"\x00" if date_time is None else b"\x0c" + _cosem_bytes(date_time, None)
    other_information = message_code + bytes(supplementary)
    signed_part = b"".join(
        (
            b"\xdf\x09",
            bytes((cra,)),
            msg.originator_counter.to_bytes(8, "big"),
            b"\x08",
            originator,
            b"\x08",
            recipient,
            date_time_field,
            ber_length(len(other_information)),
            other_information,
            ber_length(len(content)),
            content,
        )
    )
    if msg.pre_command:
        if cra != 1 or msg.mac_header or signature is not None:
            raise ValueError("a pre-command is a command without MAC header or signature")
        apdu = signed_part
    elif signature is None:
        apdu = signed_part + b"\x00"
    else:
        if len(signature) != _SIGNATURE_LENGTH:
            raise ValueError(f"signature must be 64 bytes, got {len(signature)}")
        apdu = signed_part + b"\x40" + bytes(signature)
    if not msg.mac_header:
        return apdu
    if mac is None:
        mac = hashlib.blake2s(apdu, digest_size=_MAC_LENGTH).digest()
    elif len(mac) != _MAC_LENGTH:
        raise ValueError(f"mac must be 12 bytes, got {len(mac)}")
    protected = bytes((_SECURITY_AUTH_ONLY,)) + bytes(4) + apdu + bytes(mac)
    return b"\xdd" + _EMPTY_CIPHERING_FIELDS + ber_length(len(protected)) + protected


def _default_format(msg: GbcsMessage) -> str:
    if msg.encrypted:
        return "encrypted"
    if msg.alert_code is None:
        return "none"
    if msg.alert_time is None:
        return "asn1"
    return "dlms"


def _build_content(
    msg: GbcsMessage,
    fmt: str,
    extra: bytes,
    deviation: int | None,
    payload_time: datetime | None,
) -> bytes:
    extra = bytes(extra)
    if fmt not in CONTENT_FORMATS:
        raise ValueError(f"content_format must be one of {', '.join(CONTENT_FORMATS)}, not {fmt!r}")
    if fmt == "encrypted":
        if not msg.encrypted or msg.alert_code is not None or msg.alert_time is not None:
            raise ValueError("encrypted content needs encrypted=True, alert_code=None, alert_time=None")
        body = bytes((_SECURITY_AUTH_ENCRYPTED,)) + bytes(4) + (extra or bytes(16)) + bytes(_MAC_LENGTH)
        return b"\xdd" + _EMPTY_CIPHERING_FIELDS + ber_length(len(body)) + body
    if msg.encrypted:
        raise ValueError(f"encrypted=True needs content_format 'encrypted', not {fmt!r}")
    if fmt == "none":
        if msg.alert_code is not None or msg.alert_time is not None:
            raise ValueError("content_format 'none' carries no alert code or alert time")
        if extra[:1] == b"\xdd" or (
            msg.cra_flag == "alert" and (extra[:1] in (b"\x0f", b"\x30") or extra[:2] == b"\x01\x09")
        ):
            raise ValueError("content for format 'none' must not start like an alert or encrypted payload")
        return extra
    if msg.cra_flag != "alert":
        raise ValueError(f"content_format {fmt!r} is for alerts; a {msg.cra_flag} has no alert code")
    if msg.alert_code is None:
        raise ValueError(f"content_format {fmt!r} needs an alert_code")
    code = _code_bytes(msg.alert_code, "alert_code")
    if fmt == "dlms":
        invoke_id = (0x20000000 | (msg.originator_counter & 0x00FFFFFF)).to_bytes(4, "big")
        elements = [b"\x12" + code]
        if msg.alert_time is not None:
            elements.append(b"\x09\x0c" + _cosem_bytes(msg.alert_time, deviation))
        if extra:
            if msg.alert_time is None:
                raise ValueError("DLMS extra element needs an alert_time in element 1")
            elements.append(b"\x09" + ber_length(len(extra)) + extra)
        return b"\x0f" + invoke_id + b"\x00\x02" + bytes((len(elements),)) + b"".join(elements)
    if fmt == "gbz":
        seconds = _GBZ_TIME_NOT_SET if msg.alert_time is None else _gbz_seconds(msg.alert_time)
        components = b"\x01" if extra else b"\x00"
        return b"\x01\x09" + components + code + seconds.to_bytes(4, "big") + extra
    # asn1
    if msg.alert_time is not None:
        raise ValueError("ASN.1 alert content carries no alert_time; use payload_time")
    parts = b"\x02\x03\x00" + code
    if payload_time is not None:
        moment = _utc(payload_time, "payload_time")
        generalized_time = (
            f"{moment.year:04d}{moment.month:02d}{moment.day:02d}"
            f"{moment.hour:02d}{moment.minute:02d}{moment.second:02d}Z"
        )
        parts += b"\x18\x0f" + generalized_time.encode("ascii")
    if extra:
        parts += b"\x04" + ber_length(len(extra)) + extra
    return b"\x30" + ber_length(len(parts)) + parts


def ber_length(length: int) -> bytes:
    """A BER length in its shortest form: 1, 2 or 3 bytes (4 above 65535)."""
    if length < 0x80:
        return bytes((length,))
    if length <= 0xFF:
        return bytes((0x81, length))
    if length <= 0xFFFF:
        return b"\x82" + length.to_bytes(2, "big")
    if length <= 0xFFFFFF:
        return b"\x83" + length.to_bytes(3, "big")
    raise ValueError(f"length {length} too large")


def eui_bytes(text: str) -> bytes:
    """``"90-B3-D5-1F-30-00-00-02"`` (separators ``-``, ``:`` or none) as 8 bytes."""
    digits = text.replace("-", "").replace(":", "")
    if len(digits) != 16:
        raise ValueError(f"{text!r} is not an EUI-64")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise ValueError(f"{text!r} is not an EUI-64") from None


def normalize_eui(text: str) -> str:
    """Any accepted EUI-64 spelling in the canonical ``"90-B3-D5-1F-30-00-00-02"`` form."""
    return format_eui(eui_bytes(text))


def _code_bytes(text: str, what: str) -> bytes:
    if not isinstance(text, str) or len(text) != 4:
        raise ValueError(f"{what} must be 4 hex digits, not {text!r}")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{what} must be 4 hex digits, not {text!r}") from None


def _utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC)")
    return moment.astimezone(_UTC)


def _cosem_bytes(moment: datetime, deviation: int | None) -> bytes:
    """A COSEM date-time: UTC with deviation 0x8000, or local time with ``deviation``."""
    utc = _utc(moment, "date-time")
    if utc.microsecond % 10_000:
        raise ValueError("a COSEM date-time holds hundredths of a second, not finer")
    if deviation is None:
        local, deviation_field = utc, 0x8000
    else:
        if not -720 <= deviation <= 720:
            raise ValueError(f"deviation {deviation} outside -720..720 minutes")
        local, deviation_field = utc - timedelta(minutes=deviation), deviation & 0xFFFF
    return bytes(
        (
            local.year >> 8,
            local.year & 0xFF,
            local.month,
            local.day,
            local.isoweekday(),
            local.hour,
            local.minute,
            local.second,
            local.microsecond // 10_000,
            deviation_field >> 8,
            deviation_field & 0xFF,
            0xFF,
        )
    )


def _gbz_seconds(moment: datetime) -> int:
    delta = _utc(moment, "alert_time") - _GBZ_EPOCH
    if delta.microseconds:
        raise ValueError("a GBZ alert time holds whole seconds")
    seconds = delta.days * 86_400 + delta.seconds
    if not 0 <= seconds < _GBZ_TIME_NOT_SET:
        raise ValueError("a GBZ alert time must lie between 2000-01-01 and 2136-02-07")
    return seconds


# --------------------------------------------------------------------------- simulated traffic


def build_alert(
    *,
    alert_code: str,
    originator: str,
    recipient: str,
    alert_time: datetime,
    counter: int,
    fmt: ContentFormat = "dlms",
    mac_header: bool = False,
    signed: bool = False,
    message_code: str | None = None,
) -> bytes:
    """A Device Alert as binary GBCS, e.g. for simulated traffic.

    ``alert_time`` is cut to what the format holds (DLMS 1/100 s, GBZ 1 s). ASN.1
    alerts put it in the payload's GeneralizedTime; encrypted alerts hide the code.
    ``message_code`` defaults to 1001 (generic non-critical alert) with a MAC
    header, 1000 (generic critical alert) without, and 00CA for ASN.1.
    """
    if fmt not in CONTENT_FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(CONTENT_FORMATS)}, not {fmt!r}")
    code = alert_code.upper()
    moment = _utc(alert_time, "alert_time")
    if message_code is None:
        message_code = "00CA" if fmt == "asn1" else ("1001" if mac_header else "1000")
    carried_time: datetime | None = None
    if fmt == "dlms":
        carried_time = moment.replace(microsecond=moment.microsecond // 10_000 * 10_000)
    elif fmt == "gbz":
        carried_time = moment.replace(microsecond=0)
    msg = GbcsMessage(
        cra_flag="alert",
        originator_counter=counter,
        originator=normalize_eui(originator),
        recipient=normalize_eui(recipient),
        message_code=message_code.upper(),
        alert_code=code if fmt in ("dlms", "gbz", "asn1") else None,
        alert_time=carried_time,
        mac_header=mac_header,
        encrypted=fmt == "encrypted",
    )
    return encode(
        msg,
        content_format=fmt,
        signature=_pseudo_signature(msg) if signed else None,
        payload_time=moment.replace(microsecond=0) if fmt == "asn1" else None,
    )


def build_response(
    *,
    originator: str,
    recipient: str,
    counter: int,
    message_code: str = "0062",
    mac_header: bool = False,
    signed: bool = False,
    date_time: datetime | None = None,
    encrypted: bool = False,
) -> bytes:
    """A Service Response as binary GBCS (a DLMS ACCESS-Response reporting success)."""
    msg = GbcsMessage(
        cra_flag="response",
        originator_counter=counter,
        originator=normalize_eui(originator),
        recipient=normalize_eui(recipient),
        message_code=message_code.upper(),
        alert_code=None,
        alert_time=None,
        mac_header=mac_header,
        encrypted=encrypted,
    )
    if encrypted:
        return encode(msg, content_format="encrypted", signature=_pseudo_signature(msg) if signed else None)
    invoke_id = (0x20000000 | (counter & 0x00FFFFFF)).to_bytes(4, "big")
    access_response = b"\xda" + invoke_id + b"\x00\x01\x00\x01\x01\x00"
    if date_time is not None:
        date_time = date_time.replace(microsecond=date_time.microsecond // 10_000 * 10_000)
    return encode(
        msg,
        content=access_response,
        signature=_pseudo_signature(msg) if signed else None,
        date_time=date_time,
    )


def _pseudo_signature(msg: GbcsMessage) -> bytes:
    """64 bytes standing in for an ECDSA signature (not verifiable; traffic simulation only)."""
    seed = f"{msg.originator}/{msg.originator_counter}/{msg.message_code}".encode()
    return hashlib.blake2b(seed, digest_size=_SIGNATURE_LENGTH).digest()
