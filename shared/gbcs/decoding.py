"""Decoding GBCS messages: binary frames, hex or Base64 items, and the alert inside (DLMS, GBZ, ASN.1)."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta

from shared.gbcs.message import (
    CRA_NAMES,
    EMPTY_CIPHERING_FIELDS,
    FIXED_HEADER_LENGTH,
    GBZ_EPOCH,
    GBZ_TIME_NOT_SET,
    MAC_LENGTH,
    MIN_PRE_COMMAND_LENGTH,
    MIN_SIGNED_LENGTH,
    SECURITY_AUTH_ONLY,
    SECURITY_HEADER_LENGTH,
    SIGNATURE_LENGTH,
    TAG_ASN1_SEQUENCE,
    TAG_DLMS_DATA_NOTIFICATION,
    TAG_GENERAL_CIPHERING,
    TAG_GENERAL_SIGNING,
    GbcsError,
    GbcsMessage,
)


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
    if first == TAG_GENERAL_SIGNING:
        return _decode_signed(data, 0, end, False)
    if first == TAG_GENERAL_CIPHERING:
        pos, apdu_end = _unwrap_mac_header(data, end)
        return _decode_signed(data, pos, apdu_end, True)
    raise GbcsError(
        f"unknown frame: first byte 0x{first:02X}, expected DD (MAC header) or DF (general signing)"
    )


def _unwrap_mac_header(data: bytes, end: int) -> tuple[int, int]:
    """Check the MAC header; return where the general-signing block starts and ends."""
    if end < 8:
        raise GbcsError(f"truncated MAC header: {end} bytes")
    if data[1:7] != EMPTY_CIPHERING_FIELDS:
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
    if length < SECURITY_HEADER_LENGTH + MIN_SIGNED_LENGTH + MAC_LENGTH:
        raise GbcsError(f"MAC-protected data too short: {length} bytes")
    security = data[pos]
    if security != SECURITY_AUTH_ONLY:
        raise GbcsError(
            f"security header 0x{security:02X} not supported: the GBCS MAC header uses 0x11"
        )
    return pos + SECURITY_HEADER_LENGTH, end - MAC_LENGTH


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


def _decode_signed(data: bytes, pos: int, end: int, mac_header: bool) -> GbcsMessage:
    """The general-signing block in ``data[pos:end]``."""
    if end - pos < MIN_PRE_COMMAND_LENGTH:
        raise GbcsError(
            f"truncated general-signing block: {max(end - pos, 0)} bytes, at least {MIN_PRE_COMMAND_LENGTH} needed"
        )
    if data[pos] != TAG_GENERAL_SIGNING or data[pos + 1] != 0x09:
        raise GbcsError(
            f"expected general-signing DF 09 at offset {pos}, found {data[pos:pos + 2].hex(' ').upper()}"
        )
    cra = data[pos + 2]
    cra_flag = CRA_NAMES.get(cra)
    if cra_flag is None:
        raise GbcsError(f"unknown CRA flag 0x{cra:02X} (01 command, 02 response, 03 alert)")
    counter = int.from_bytes(data[pos + 3 : pos + 11], "big")
    if data[pos + 11] != 8:
        raise GbcsError(f"originator system title length {data[pos + 11]}, expected 8")
    originator = data[pos + 12 : pos + 20].hex("-").upper()
    if data[pos + 20] != 8:
        raise GbcsError(f"recipient system title length {data[pos + 20]}, expected 8")
    recipient = data[pos + 21 : pos + 29].hex("-").upper()
    pos += FIXED_HEADER_LENGTH

    date_time_length = data[pos]  # pos < end: the minimum length was checked above
    if date_time_length == 0:
        pos += 1
    elif date_time_length == 12:
        pos += 13
    else:
        raise GbcsError(f"grouping header date-time length {date_time_length}, expected 0 or 12")
    if pos < end and data[pos] < 0x80:  # the common one-byte form, read inline
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
        content_start = pos + 1
    else:
        content_length, content_start = _read_length(data, pos, end, "content length")
    content_end = content_start + content_length
    if content_end > end:
        raise GbcsError(
            f"content length {content_length} runs past the end of the message ({end - content_start} bytes left)"
        )
    pre_command = _check_signature(data, content_end, end, cra, mac_header)
    alert_code, alert_time, encrypted = _content(data, content_start, content_end, cra)
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


def _check_signature(data: bytes, content_end: int, end: int, cra: int, mac_header: bool) -> bool:
    """Check what follows the content (the signature, or nothing for a pre-command); whether
    the message is a pre-command."""
    if content_end == end:
        if cra != 1 or mac_header:
            raise GbcsError(
                "truncated: signature length missing (only a pre-command, a command without "
                "MAC header, ends at its content)"
            )
        return True
    signature_length = data[content_end]
    if signature_length != 0 and signature_length != SIGNATURE_LENGTH:
        raise GbcsError(f"signature length {signature_length}, expected 0 or 64")
    rest = end - content_end - 1
    if rest != signature_length:
        if rest < signature_length:
            raise GbcsError(f"truncated signature: {rest} of {signature_length} bytes")
        raise GbcsError(f"{rest - signature_length} unexpected bytes after the signature")
    return False


def _content(data: bytes, start: int, end: int, cra: int) -> tuple[str | None, datetime | None, bool]:
    """What the content says: (alert code, alert time, encrypted). Only an alert's content is
    looked into."""
    if start == end:
        return None, None, False
    tag = data[start]
    if tag == TAG_GENERAL_CIPHERING:
        return None, None, True
    if cra == 3:
        if tag == TAG_DLMS_DATA_NOTIFICATION:
            return (*_dlms_alert(data, start, end), False)
        if tag == 0x01 and end - start > 1 and data[start + 1] == 0x09:
            return (*_gbz_alert(data, start, end), False)
        if tag == TAG_ASN1_SEQUENCE:
            return _asn1_alert_code(data, start, end), None, False
    return None, None, False


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
        moment = datetime(year, month, day, hour, minute, second, hundredths * 10_000, UTC)
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
    if seconds == GBZ_TIME_NOT_SET:
        return alert_code, None
    return alert_code, GBZ_EPOCH + timedelta(seconds=seconds)


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
    frame_starts = (TAG_GENERAL_CIPHERING, TAG_GENERAL_SIGNING)
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
