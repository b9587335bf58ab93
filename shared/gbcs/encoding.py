"""Encoding GBCS messages (what ``decode`` reads back) and the alerts and responses of simulated traffic."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from shared.gbcs.message import (
    CONTENT_FORMATS,
    CRA_FLAGS,
    EMPTY_CIPHERING_FIELDS,
    GBZ_EPOCH,
    GBZ_TIME_NOT_SET,
    MAC_LENGTH,
    SECURITY_AUTH_ENCRYPTED,
    SECURITY_AUTH_ONLY,
    SIGNATURE_LENGTH,
    ContentFormat,
    GbcsMessage,
    ber_length,
    eui_bytes,
    normalize_eui,
)


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
    cra = CRA_FLAGS.get(msg.cra_flag)
    if cra is None:
        raise ValueError(f"cra_flag must be command, response or alert, not {msg.cra_flag!r}")
    if not 0 <= msg.originator_counter < 1 << 64:
        raise ValueError(f"originator_counter {msg.originator_counter} does not fit in 8 bytes")
    titles = eui_bytes(msg.originator) + b"\x08" + eui_bytes(msg.recipient)
    message_code = _code_bytes(msg.message_code, "message_code")
    if content is None:
        fmt = content_format or _default_format(msg)
        content = _build_content(msg, fmt, extra, deviation, payload_time)
    elif content_format is not None:
        raise ValueError("give either content or content_format, not both")
    apdu = _signed_part(msg, cra, titles, message_code + bytes(supplementary), content, date_time)
    if msg.pre_command:
        if cra != 1 or msg.mac_header or signature is not None:
            raise ValueError("a pre-command is a command without MAC header or signature")
    elif signature is None:
        apdu += b"\x00"
    else:
        if len(signature) != SIGNATURE_LENGTH:
            raise ValueError(f"signature must be 64 bytes, got {len(signature)}")
        apdu += b"\x40" + bytes(signature)
    return _with_mac_header(apdu, mac) if msg.mac_header else apdu


def _signed_part(msg: GbcsMessage, cra: int, titles: bytes, other_information: bytes, content: bytes,
                 date_time: datetime | None) -> bytes:
    """The general-signing block up to and with its content (``titles``: originator 08 recipient)."""
    date_time_field = b"\x00" if date_time is None else b"\x0c" + _cosem_bytes(date_time, None)
    return b"".join(
        (
            b"\xdf\x09",
            bytes((cra,)),
            msg.originator_counter.to_bytes(8, "big"),
            b"\x08",
            titles,
            date_time_field,
            ber_length(len(other_information)),
            other_information,
            ber_length(len(content)),
            content,
        )
    )


def _with_mac_header(apdu: bytes, mac: bytes | None) -> bytes:
    """``apdu`` behind the MAC header, ending with ``mac`` (default: a digest of the data)."""
    if mac is None:
        mac = hashlib.blake2s(apdu, digest_size=MAC_LENGTH).digest()
    elif len(mac) != MAC_LENGTH:
        raise ValueError(f"mac must be 12 bytes, got {len(mac)}")
    protected = bytes((SECURITY_AUTH_ONLY,)) + bytes(4) + apdu + bytes(mac)
    return b"\xdd" + EMPTY_CIPHERING_FIELDS + ber_length(len(protected)) + protected


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
        body = bytes((SECURITY_AUTH_ENCRYPTED,)) + bytes(4) + (extra or bytes(16)) + bytes(MAC_LENGTH)
        return b"\xdd" + EMPTY_CIPHERING_FIELDS + ber_length(len(body)) + body
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
        seconds = GBZ_TIME_NOT_SET if msg.alert_time is None else _gbz_seconds(msg.alert_time)
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
    return moment.astimezone(UTC)


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
    delta = _utc(moment, "alert_time") - GBZ_EPOCH
    if delta.microseconds:
        raise ValueError("a GBZ alert time holds whole seconds")
    seconds = delta.days * 86_400 + delta.seconds
    if not 0 <= seconds < GBZ_TIME_NOT_SET:
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
    return hashlib.blake2b(seed, digest_size=SIGNATURE_LENGTH).digest()
