"""GBCS decoding and encoding.

Frames here are put together byte by byte in the tests (or with the encoder,
whose output is checked against those hand-made frames); expected values are
worked out from the bytes, not taken from the decoder's output.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alert_timing import gbcs_cli
from alert_timing_benchmarks.gbcs import build_mix, run_bench
from shared.alert_codes import ALERT_NAMES, alert_name
from shared.gbcs import (
    ACB_EUI,
    SUPPLIER_EUI,
    GbcsError,
    GbcsMessage,
    build_alert,
    build_response,
    decode,
    decode_item,
    encode,
    is_alert,
    is_to_acb,
)

UTC = UTC
DEVICE = bytes.fromhex("0011223344556677")
DEVICE_EUI = "00-11-22-33-44-55-66-77"
SUPPLIER = bytes.fromhex("90B3D51F30010000")
ACB = bytes.fromhex("90B3D51F30000002")

# 2023-06-01 (a Thursday, day-of-week 4) 10:15:00.00, deviation 0x8000 (not specified), status FF
COSEM_2023_06_01_1015 = bytes.fromhex("07E7 0601 04 0A0F0000 8000 FF")
WHEN = datetime(2023, 6, 1, 10, 15, tzinfo=UTC)
# Seconds from 2000-01-01 to 2023-06-01: 23 years with 6 leap days (2000..2020) = 8401 days,
# plus January to May 2023 (31+28+31+30+31 = 151 days) = 8552 days; then 10 h 15 min.
GBZ_SECONDS_2023_06_01_1015 = 8552 * 86_400 + 10 * 3_600 + 15 * 60


def ber(length: int) -> bytes:
    """BER length, written out independently of the module under test."""
    if length < 0x80:
        return bytes([length])
    if length < 0x100:
        return bytes([0x81, length])
    return bytes([0x82, length >> 8, length & 0xFF])


def signed_block(
    *,
    cra: int = 3,
    counter: int = 0x1234,
    originator: bytes = DEVICE,
    recipient: bytes = SUPPLIER,
    date_time: bytes = b"\x00",
    other_information: bytes = bytes.fromhex("1000"),
    content: bytes = b"",
    content_length: bytes | None = None,
    signature: bytes = b"",
    pre_command: bool = False,
) -> bytes:
    """A general-signing block; ``pre_command`` leaves out the signature length byte."""
    return (
        b"\xdf\x09"
        + bytes([cra])
        + counter.to_bytes(8, "big")
        + b"\x08"
        + originator
        + b"\x08"
        + recipient
        + date_time
        + ber(len(other_information))
        + other_information
        + (ber(len(content)) if content_length is None else content_length)
        + content
        + (b"" if pre_command else ber(len(signature)) + signature)
    )


def with_mac_header(apdu: bytes, mac: bytes = b"\xaa" * 12) -> bytes:
    protected = b"\x11\x00\x00\x00\x00" + apdu + mac
    return b"\xdd" + bytes(6) + ber(len(protected)) + protected


def dlms_content(code: bytes = b"\x8f\x3f", date_time: bytes = COSEM_2023_06_01_1015, invoke: bytes = bytes.fromhex("20001234")) -> bytes:
    # 0F invoke-id(4) 00 | structure of 2: long-unsigned alert code, octet-string(12) date-time
    return b"\x0f" + invoke + b"\x00" + b"\x02\x02" + b"\x12" + code + b"\x09\x0c" + date_time


def gbz_content(code: bytes = b"\x8f\x1d", seconds: int = GBZ_SECONDS_2023_06_01_1015) -> bytes:
    return b"\x01\x09" + b"\x00" + code + seconds.to_bytes(4, "big")


def message(**changes: object) -> GbcsMessage:
    fields: dict[str, object] = dict(
        cra_flag="alert",
        originator_counter=0x1234,
        originator=DEVICE_EUI,
        recipient=SUPPLIER_EUI,
        message_code="1000",
        alert_code="8F3F",
        alert_time=WHEN,
        mac_header=False,
        encrypted=False,
    )
    fields.update(changes)
    return GbcsMessage(**fields)  # type: ignore[arg-type]


# ----------------------------------------------------------------- hand-made frames


DLMS_FRAME = signed_block(content=dlms_content())
MAC_FRAME = with_mac_header(signed_block(other_information=bytes.fromhex("1001"), content=dlms_content()))
GBZ_FRAME = signed_block(
    counter=0xBB8, other_information=bytes.fromhex("1000"), content=gbz_content(), signature=b"\x5a" * 64
)
GENERALIZED_TIME = b"\x18\x0f" + b"20230601101500Z"
ASN1_CONTENT = b"\x30" + bytes([5 + len(GENERALIZED_TIME)]) + b"\x02\x03\x00\x8f\x66" + GENERALIZED_TIME
ASN1_FRAME = signed_block(other_information=bytes.fromhex("00CA"), content=ASN1_CONTENT, signature=b"\x33" * 64)
CIPHERED_BODY = b"\x31\x00\x00\x00\x00" + bytes(16) + bytes(12)
ENCRYPTED_CONTENT = b"\xdd" + bytes(6) + bytes([len(CIPHERED_BODY)]) + CIPHERED_BODY
ENCRYPTED_RESPONSE = signed_block(
    cra=2,
    counter=0x2000,
    date_time=b"\x0c" + COSEM_2023_06_01_1015,
    other_information=bytes.fromhex("0062"),
    content=ENCRYPTED_CONTENT,
)
COMMAND_FRAME = signed_block(cra=1, counter=7, originator=SUPPLIER, recipient=DEVICE, other_information=b"\x00\x62\x01", content=b"\xd9\x01")
VALID_FRAMES = [DLMS_FRAME, MAC_FRAME, GBZ_FRAME, ASN1_FRAME, ENCRYPTED_RESPONSE, COMMAND_FRAME]
# A pre-command as the DCC returns it for signing: CS02b-like, ASN.1 content, nothing after the content.
PRE_COMMAND_CONTENT = b"\x30\x06\x02\x01\x02\xa2\x01\x00"
PRE_COMMAND_FRAME = signed_block(
    cra=1, counter=0x3EC, originator=SUPPLIER, recipient=DEVICE, other_information=b"\x01\x02",
    content=PRE_COMMAND_CONTENT, pre_command=True,
)


def test_dlms_alert_without_mac_header() -> None:
    assert decode(DLMS_FRAME) == message()


def test_dlms_alert_encodes_to_the_hand_made_frame() -> None:
    assert encode(message()) == DLMS_FRAME


def test_mac_header_frame() -> None:
    expected = message(message_code="1001", mac_header=True)
    assert MAC_FRAME[:8] == b"\xdd\x00\x00\x00\x00\x00\x00\x4d"  # 5 + 60 + 12 = 77 bytes protected
    assert decode(MAC_FRAME) == expected
    assert encode(expected, mac=b"\xaa" * 12) == MAC_FRAME


def test_gbz_gas_alert_signed() -> None:
    expected = message(originator_counter=3000, alert_code="8F1D")
    assert decode(GBZ_FRAME) == expected
    assert encode(expected, content_format="gbz", signature=b"\x5a" * 64) == GBZ_FRAME


def test_gbz_time_not_set() -> None:
    frame = signed_block(content=gbz_content(seconds=0xFFFFFFFF))
    assert decode(frame).alert_time is None


def test_asn1_alert_code_integer() -> None:
    expected = message(message_code="00CA", alert_code="8F66", alert_time=None)
    assert decode(ASN1_FRAME) == expected
    assert encode(expected, signature=b"\x33" * 64, payload_time=WHEN) == ASN1_FRAME


def test_asn1_sequence_not_starting_with_integer_has_no_code() -> None:
    frame = signed_block(content=b"\x30\x03\x04\x01\x00")
    assert decode(frame).alert_code is None


def test_encrypted_content_keeps_the_header() -> None:
    expected = message(
        cra_flag="response",
        originator_counter=0x2000,
        message_code="0062",
        alert_code=None,
        alert_time=None,
        encrypted=True,
    )
    assert decode(ENCRYPTED_RESPONSE) == expected
    assert encode(expected, date_time=WHEN) == ENCRYPTED_RESPONSE


def test_encrypted_alert_has_no_code() -> None:
    decoded = decode(signed_block(content=ENCRYPTED_CONTENT))
    assert (decoded.cra_flag, decoded.alert_code, decoded.alert_time, decoded.encrypted) == ("alert", None, None, True)


def test_unsigned_pre_command_has_no_signature_length() -> None:
    assert PRE_COMMAND_FRAME[-len(PRE_COMMAND_CONTENT) - 1 :] == b"\x08" + PRE_COMMAND_CONTENT
    expected = message(
        cra_flag="command", originator_counter=0x3EC, originator=SUPPLIER_EUI, recipient=DEVICE_EUI,
        message_code="0102", alert_code=None, alert_time=None, pre_command=True,
    )
    assert decode(PRE_COMMAND_FRAME) == expected
    assert encode(expected, content=PRE_COMMAND_CONTENT) == PRE_COMMAND_FRAME
    # The same command with signature length 00 is an (unsigned) command, not a pre-command.
    assert decode(PRE_COMMAND_FRAME + b"\x00") == message(
        cra_flag="command", originator_counter=0x3EC, originator=SUPPLIER_EUI, recipient=DEVICE_EUI,
        message_code="0102", alert_code=None, alert_time=None,
    )


def test_smallest_pre_command_decodes() -> None:
    frame = signed_block(cra=1, other_information=b"\x00\x62", pre_command=True)
    assert len(frame) == 29 + 1 + 3 + 1
    assert decode(frame).pre_command
    with pytest.raises(GbcsError, match="truncated general-signing block"):
        decode(frame[:-1])


@pytest.mark.parametrize(
    "frame",
    [
        signed_block(content=dlms_content(), pre_command=True),
        signed_block(cra=2, other_information=b"\x00\x62", content=b"\xda\x01", pre_command=True),
        with_mac_header(PRE_COMMAND_FRAME),
    ],
    ids=["alert", "response", "command-with-mac-header"],
)
def test_only_a_command_without_mac_header_may_end_at_its_content(frame: bytes) -> None:
    with pytest.raises(GbcsError, match="signature length missing"):
        decode(frame)


def test_command_is_not_an_alert() -> None:
    decoded = decode(COMMAND_FRAME)
    assert decoded == GbcsMessage("command", 7, "90-B3-D5-1F-30-01-00-00", DEVICE_EUI, "0062", None, None, False, False)
    assert not is_alert(decoded)


def test_response_content_is_not_read_as_an_alert() -> None:
    # A response whose content happens to look like a DLMS alert still has no alert code.
    decoded = decode(signed_block(cra=2, content=dlms_content()))
    assert (decoded.cra_flag, decoded.alert_code, decoded.alert_time) == ("response", None, None)


def test_alert_to_acb() -> None:
    decoded = decode(signed_block(recipient=ACB, content=dlms_content(code=b"\x8f\x12")))
    assert is_alert(decoded) and is_to_acb(decoded)
    assert decoded.recipient == ACB_EUI == "90-B3-D5-1F-30-00-00-02"
    assert not is_to_acb(decode(DLMS_FRAME))


def test_dlms_alert_code_only() -> None:
    content = b"\x0f\x20\x00\x12\x34\x00" + b"\x02\x01" + b"\x12\x8f\x3f"
    decoded = decode(signed_block(content=content))
    assert (decoded.alert_code, decoded.alert_time) == ("8F3F", None)


def test_dlms_element_one_not_a_date_time() -> None:
    content = b"\x0f\x20\x00\x12\x34\x00" + b"\x02\x02" + b"\x12\x8f\x3f" + b"\x11\x05"
    assert decode(signed_block(content=content)).alert_time is None


def test_dlms_deviation_and_hundredths() -> None:
    # Local 11:15:00.12 with deviation -60 minutes (0xFFC4): UTC = local + deviation = 10:15:00.12
    local = bytes.fromhex("07E7 0601 04 0B0F000C FFC4 00")
    decoded = decode(signed_block(content=dlms_content(date_time=local)))
    assert decoded.alert_time == datetime(2023, 6, 1, 10, 15, 0, 120_000, tzinfo=UTC)
    assert encode(decoded, deviation=-60) == signed_block(content=dlms_content(date_time=local[:-1] + b"\xff"))


def test_dlms_date_time_in_data_notification_header_is_skipped() -> None:
    content = b"\x0f\x20\x00\x12\x34" + b"\x0c" + COSEM_2023_06_01_1015 + b"\x02\x02\x12\x8f\x3f\x09\x0c" + COSEM_2023_06_01_1015
    assert decode(signed_block(content=content)).alert_time == WHEN


@pytest.mark.parametrize(
    "date_time",
    [
        "FFFF 0601 04 0A0F0000 8000 FF",  # any year
        "07E7 FF01 04 0A0F0000 8000 FF",  # any month
        "07E7 06FF 04 0A0F0000 8000 FF",  # any day
        "07E7 06FE 04 0A0F0000 8000 FF",  # last day of month
        "07E7 0601 04 FF0F0000 8000 FF",  # any hour
        "07E7 0601 04 0AFF0000 8000 FF",  # any minute
    ],
)
def test_cosem_wildcards_give_no_time(date_time: str) -> None:
    decoded = decode(signed_block(content=dlms_content(date_time=bytes.fromhex(date_time))))
    assert (decoded.alert_code, decoded.alert_time) == ("8F3F", None)


def test_cosem_unspecified_seconds_and_hundredths_count_as_zero() -> None:
    decoded = decode(signed_block(content=dlms_content(date_time=bytes.fromhex("07E7 0601 04 0A0FFFFF 8000 FF"))))
    assert decoded.alert_time == WHEN


@pytest.mark.parametrize(
    "date_time",
    [
        "07E7 0D01 04 0A0F0000 8000 FF",  # month 13
        "07E7 021E 04 0A0F0000 8000 FF",  # 30 February
        "07E7 0600 04 0A0F0000 8000 FF",  # day 0
        "07E7 0601 04 180F0000 8000 FF",  # hour 24
        "07E7 0601 04 0A3C0000 8000 FF",  # minute 60
        "07E7 0601 04 0A0F0064 8000 FF",  # 100 hundredths
        "07E7 0601 04 0A0F0000 0400 FF",  # deviation 1024 minutes
    ],
)
def test_cosem_invalid_date_time_is_an_error(date_time: str) -> None:
    with pytest.raises(GbcsError, match="COSEM date-time"):
        decode(signed_block(content=dlms_content(date_time=bytes.fromhex(date_time))))


# ----------------------------------------------------------------- BER length forms


def content_length_field(frame: bytes) -> bytes:
    """The content length bytes of an unsigned, MAC-less frame with a 2-byte other-information."""
    start = 29 + 1 + 1 + 2
    first = frame[start]
    return frame[start : start + (1 if first < 0x80 else 1 + first - 0x80)]


@pytest.mark.parametrize(
    ("extra_length", "expected_prefix"),
    [(10, None), (120, b"\x81"), (400, b"\x82")],
)
def test_ber_length_forms_round_trip(extra_length: int, expected_prefix: bytes | None) -> None:
    msg = message()
    frame = encode(msg, extra=bytes(extra_length))
    field = content_length_field(frame)
    content_length = len(dlms_content()) + 1 + len(ber(extra_length)) + extra_length
    if expected_prefix is None:
        assert field == bytes([content_length])
    else:
        assert field[:1] == expected_prefix
        assert int.from_bytes(field[1:], "big") == content_length
    assert decode(frame) == msg


def test_mac_header_long_length_forms() -> None:
    for extra_length, prefix in ((150, b"\x81"), (300, b"\x82")):
        msg = message(mac_header=True)
        frame = encode(msg, extra=bytes(extra_length))
        assert frame[7:8] == prefix
        assert decode(frame) == msg


def test_non_minimal_ber_length_is_accepted() -> None:
    content = dlms_content()
    frame = signed_block(content=content, content_length=b"\x82" + len(content).to_bytes(2, "big"))
    assert decode(frame) == message()


def test_indefinite_ber_length_is_rejected() -> None:
    with pytest.raises(GbcsError, match="BER length"):
        decode(signed_block(content=dlms_content(), content_length=b"\x80"))


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "frame", [*VALID_FRAMES, PRE_COMMAND_FRAME], ids=["dlms", "mac", "gbz", "asn1", "encrypted", "command", "pre-command"]
)
def test_truncated_at_every_offset(frame: bytes) -> None:
    decode(frame)
    for cut in range(len(frame)):
        if frame is COMMAND_FRAME and cut == len(frame) - 1:
            # Without its signature length byte a command without MAC header is a pre-command.
            assert decode(frame[:cut]).pre_command
            continue
        with pytest.raises(GbcsError):
            decode(frame[:cut])


@pytest.mark.parametrize("frame", VALID_FRAMES, ids=["dlms", "mac", "gbz", "asn1", "encrypted", "command"])
def test_trailing_bytes_are_rejected(frame: bytes) -> None:
    with pytest.raises(GbcsError):
        decode(frame + b"\x00")


def test_bytes_after_a_pre_command() -> None:
    with pytest.raises(GbcsError, match="signature length 1, expected 0 or 64"):
        decode(PRE_COMMAND_FRAME + b"\x01")
    with pytest.raises(GbcsError, match="unexpected bytes after the signature"):
        decode(PRE_COMMAND_FRAME + b"\x00\x00")


def replace_at(frame: bytes, offset: int, value: int) -> bytes:
    return frame[:offset] + bytes([value]) + frame[offset + 1 :]


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (replace_at(DLMS_FRAME, 0, 0xDE), "unknown frame"),
        (replace_at(DLMS_FRAME, 1, 0x08), "DF 09"),
        (replace_at(DLMS_FRAME, 2, 0x04), "CRA flag"),
        (replace_at(DLMS_FRAME, 11, 0x07), "originator system title"),
        (replace_at(DLMS_FRAME, 20, 0x09), "recipient system title"),
        (replace_at(DLMS_FRAME, 29, 0x05), "date-time length"),
        (replace_at(DLMS_FRAME, 30, 0x01), "other-information length"),
        (replace_at(DLMS_FRAME, len(DLMS_FRAME) - 1, 0x20), "signature length"),
        (replace_at(MAC_FRAME, 3, 0x01), "MAC header"),
        (replace_at(MAC_FRAME, 8, 0x31), "security header"),
        (signed_block(content=b"\x0f\x20\x00\x12\x34\x00\x01\x02\x12\x8f\x3f"), "not a structure"),
        (signed_block(content=b"\x0f\x20\x00\x12\x34\x00\x02\x02\x11\x8f\x3f\x00"), "long-unsigned"),
        (signed_block(content=b"\x0f\x20\x00\x12\x34\x00\x02\x00\x12\x8f\x3f"), "empty structure"),
        (signed_block(content=b"\x0f\x20\x00\x12\x34\x07\x02\x02\x12\x8f\x3f"), "date-time length"),
        (signed_block(content=b"\x0f\x20\x00\x12\x34\x00\x02\x02\x12\x8f\x3f"), "element 1"),
        (signed_block(content=b"\x0f\x20\x00\x12\x34\x00\x02\x02\x12\x8f\x3f\x09\x0c\x07\xe7"), "COSEM"),
        (signed_block(content=b"\x01\x09\x00\x8f\x1d\x00"), "GBZ"),
        (signed_block(content=b"\x30\x09\x02\x03\x00\x8f\x66"), "SEQUENCE length"),
        (signed_block(content=b"\x30\x05\x02\x04\x00\x8f\x66\x00"), "INTEGER"),
        (signed_block(content=b"\x30\x05\x02\x03\xff\x8f\x66"), "16-bit"),
        (signed_block(content=b"\x30\x03\x02\x03\x00"), "truncated ASN.1"),
    ],
)
def test_wrong_tags_and_malformed_content(frame: bytes, match: str) -> None:
    with pytest.raises(GbcsError, match=match):
        decode(frame)


def test_lengths_running_past_the_end() -> None:
    content = dlms_content()
    with pytest.raises(GbcsError, match="content length"):
        decode(signed_block(content=content, content_length=bytes([len(content) + 5])))
    with pytest.raises(GbcsError, match="content length"):
        decode(signed_block(content=content, content_length=b"\x82\xff\xff"))
    oversized_mac = MAC_FRAME[:7] + b"\x82\x01\x00" + MAC_FRAME[8:]
    with pytest.raises(GbcsError, match="runs past the end"):
        decode(oversized_mac)
    other_too_long = replace_at(DLMS_FRAME, 30, 0x7F)
    with pytest.raises(GbcsError, match="other-information length"):
        decode(other_too_long)


def test_empty_and_non_bytes() -> None:
    with pytest.raises(GbcsError, match="empty"):
        decode(b"")
    with pytest.raises(GbcsError, match="expected bytes"):
        decode("DF09")  # type: ignore[arg-type]
    assert decode(bytearray(DLMS_FRAME)) == decode(memoryview(DLMS_FRAME)) == message()


def test_one_megabyte_of_garbage() -> None:
    garbage = random.Random(2023).randbytes(1 << 20)
    for frame in (garbage, b"\xdf" + garbage, b"\xdf\x09\x03" + garbage, b"\xdd" + bytes(6) + b"\x83\x10\x00\x00" + garbage):
        with pytest.raises(GbcsError):
            decode(frame)
    with pytest.raises(GbcsError):
        decode_item(garbage.hex())
    with pytest.raises(GbcsError):
        decode_item(base64.b64encode(garbage).decode())


# ----------------------------------------------------------------- ITEM text


def test_decode_item_hex_with_spaces_and_newlines() -> None:
    text = DLMS_FRAME.hex(" ").upper()
    spread = text[:30] + "\n  " + text[30:].lower() + "\n"
    assert decode_item(spread) == message()


def test_decode_item_base64() -> None:
    assert decode_item(base64.b64encode(MAC_FRAME).decode()) == decode(MAC_FRAME)
    unpadded = base64.b64encode(GBZ_FRAME).decode().rstrip("=")
    assert decode_item(unpadded) == decode(GBZ_FRAME)
    assert decode_item(base64.urlsafe_b64encode(ASN1_FRAME).decode()) == decode(ASN1_FRAME)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("   \n\t ", "empty"),
        ("not a message!", "not hex and not Base64"),
        ("DF0", "odd number of hex digits"),
        ("zzzz", "not a GBCS message"),
        ("0011223344", "unknown frame"),
        ("DF09", "truncated"),
        ("é" * 8, "not hex and not Base64"),
    ],
)
def test_decode_item_rejects(text: str, match: str) -> None:
    with pytest.raises(GbcsError, match=match):
        decode_item(text)


def test_decode_item_needs_text() -> None:
    with pytest.raises(GbcsError, match="expected text"):
        decode_item(DLMS_FRAME)  # type: ignore[arg-type]


# ----------------------------------------------------------------- properties

EUIS = st.binary(min_size=8, max_size=8).map(lambda raw: raw.hex("-").upper())
HEX4 = st.integers(0, 0xFFFF).map(lambda value: f"{value:04X}")
HUNDREDTHS_TIMES = st.datetimes(
    min_value=datetime(1901, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=moment.microsecond // 10_000 * 10_000))
GBZ_TIMES = st.integers(0, 0xFFFFFFFE).map(lambda seconds: datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds))


@st.composite
def encodable(draw: st.DrawFn) -> tuple[GbcsMessage, dict[str, object]]:
    fmt = draw(st.sampled_from(["dlms", "gbz", "asn1", "none", "encrypted"]))
    cra = "alert" if fmt in ("dlms", "gbz", "asn1") else draw(st.sampled_from(["command", "response", "alert"]))
    pre_command = cra == "command" and draw(st.booleans())
    alert_time = None
    deviation = None
    if fmt == "dlms":
        alert_time = draw(st.none() | HUNDREDTHS_TIMES)
        deviation = draw(st.none() | st.integers(-720, 720))
    elif fmt == "gbz":
        alert_time = draw(st.none() | GBZ_TIMES)
    extra = draw(st.binary(max_size=400))
    if fmt == "dlms" and alert_time is None:
        extra = b""
    if fmt == "none" and extra[:1] in (b"\x0f", b"\x30", b"\xdd", b"\x01"):
        extra = b"\xda" + extra
    msg = GbcsMessage(
        cra_flag=cra,
        originator_counter=draw(st.integers(0, 2**64 - 1)),
        originator=draw(EUIS),
        recipient=draw(EUIS),
        message_code=draw(HEX4),
        alert_code=draw(HEX4) if fmt in ("dlms", "gbz", "asn1") else None,
        alert_time=alert_time,
        mac_header=False if pre_command else draw(st.booleans()),
        encrypted=fmt == "encrypted",
        pre_command=pre_command,
    )
    options: dict[str, object] = {
        "content_format": fmt,
        "extra": extra,
        "signature": None if pre_command else draw(st.none() | st.binary(min_size=64, max_size=64)),
        "date_time": draw(st.none() | HUNDREDTHS_TIMES),
        "supplementary": draw(st.binary(max_size=30)),
        "deviation": deviation,
        "payload_time": draw(st.none() | HUNDREDTHS_TIMES) if fmt == "asn1" else None,
    }
    return msg, options


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(encodable())
def test_round_trip(case: tuple[GbcsMessage, dict[str, object]]) -> None:
    msg, options = case
    frame = encode(msg, **options)  # type: ignore[arg-type]
    assert decode(frame) == msg
    assert decode_item(frame.hex()) == msg
    assert decode_item(base64.b64encode(frame).decode()) == msg


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    try:
        decoded = decode(data)
    except GbcsError:
        return
    assert isinstance(decoded, GbcsMessage)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_after_a_valid_header(tail: bytes) -> None:
    for head in (DLMS_FRAME[:33], MAC_FRAME[:8], b"\xdd" + bytes(6) + ber(len(tail) + 8) + b"\x11" + bytes(4) + DLMS_FRAME[:3]):
        try:
            decode(head + tail)
        except GbcsError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([*VALID_FRAMES, PRE_COMMAND_FRAME]), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4))
def test_fuzz_mutated_frames(frame: bytes, mutations: list[tuple[int, int]]) -> None:
    mutated = bytearray(frame)
    for offset, value in mutations:
        mutated[offset % len(mutated)] = value
    try:
        decode(bytes(mutated))
    except GbcsError:
        pass


# ----------------------------------------------------------------- encoder guards


@pytest.mark.parametrize(
    ("msg", "options", "match"),
    [
        (message(cra_flag="alarm"), {}, "cra_flag"),
        (message(originator="00-11"), {}, "EUI-64"),
        (message(message_code="10"), {}, "message_code"),
        (message(alert_time=datetime(2023, 6, 1, 10, 15, 0, 5)), {"content_format": "dlms"}, "timezone"),
        (message(alert_time=WHEN.replace(microsecond=5)), {"content_format": "dlms"}, "hundredths"),
        (message(alert_time=WHEN.replace(microsecond=10_000)), {"content_format": "gbz"}, "whole seconds"),
        (message(), {"content_format": "asn1"}, "payload_time"),
        (message(cra_flag="response"), {"content_format": "dlms"}, "for alerts"),
        (message(alert_code=None, alert_time=None), {"content_format": "gbz"}, "alert_code"),
        (message(), {"content_format": "none"}, "no alert code"),
        (message(encrypted=True), {"content_format": "dlms"}, "encrypted"),
        (message(), {"signature": b"short"}, "64 bytes"),
        (message(), {"content_format": "xml"}, "content_format"),
        (message(alert_code=None, alert_time=None, pre_command=True), {"content_format": "none"}, "pre-command"),
        (message(cra_flag="command", alert_code=None, alert_time=None, pre_command=True, mac_header=True), {}, "pre-command"),
        (message(cra_flag="command", alert_code=None, alert_time=None, pre_command=True), {"signature": bytes(64)}, "pre-command"),
    ],
)
def test_encode_refuses_what_decode_could_not_return(msg: GbcsMessage, options: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        encode(msg, **options)  # type: ignore[arg-type]


# ----------------------------------------------------------------- simulated traffic


def test_build_alert_formats() -> None:
    moment = datetime(2023, 6, 1, 10, 15, 0, 123_456, tzinfo=UTC)
    common = dict(alert_code="8f3f", originator="0011223344556677", recipient=ACB_EUI, alert_time=moment, counter=42)
    dlms = decode(build_alert(**common, fmt="dlms", mac_header=True))  # type: ignore[arg-type]
    assert dlms == GbcsMessage(
        "alert", 42, DEVICE_EUI, ACB_EUI, "1001", "8F3F", moment.replace(microsecond=120_000), True, False
    )
    gbz = decode(build_alert(**common, fmt="gbz", signed=True))  # type: ignore[arg-type]
    assert (gbz.message_code, gbz.alert_code, gbz.alert_time, gbz.mac_header) == ("1000", "8F3F", moment.replace(microsecond=0), False)
    asn1 = decode(build_alert(**common, fmt="asn1", signed=True))  # type: ignore[arg-type]
    assert (asn1.message_code, asn1.alert_code, asn1.alert_time) == ("00CA", "8F3F", None)
    hidden = decode(build_alert(**common, fmt="encrypted"))  # type: ignore[arg-type]
    assert (hidden.alert_code, hidden.alert_time, hidden.encrypted) == (None, None, True)
    signed = build_alert(**common, signed=True)  # type: ignore[arg-type]
    assert signed[-65] == 0x40


def test_build_response() -> None:
    frame = build_response(originator=DEVICE_EUI, recipient=SUPPLIER_EUI, counter=99, mac_header=True, date_time=WHEN)
    assert decode(frame) == GbcsMessage("response", 99, DEVICE_EUI, SUPPLIER_EUI, "0062", None, None, True, False)
    hidden = decode(build_response(originator=DEVICE_EUI, recipient=SUPPLIER_EUI, counter=1, encrypted=True, signed=True))
    assert hidden.encrypted and hidden.cra_flag == "response"


def test_bench_mix_decodes_and_reports() -> None:
    frames = build_mix(400)
    decoded = [decode(frame) for frame in frames]
    kinds = {(m.cra_flag, m.alert_time is None) for m in decoded}
    assert ("response", True) in kinds and ("alert", False) in kinds and ("alert", True) in kinds
    figures = run_bench(2_000)
    assert figures["decodes"] == 2_000 and figures["decodes_per_second"] > 0


# ----------------------------------------------------------------- alert names


def test_alert_names() -> None:
    assert alert_name("8F3F") == "Unauthorised Physical Access - Tamper Detect"
    assert alert_name("8f3f") == alert_name("0x8F3F") == ALERT_NAMES["8F3F"]
    assert alert_name("810D") == "Combined Credit Below Low Credit Threshold (prepayment mode)"
    assert alert_name("8F72") == "Firmware Verification Successful"
    assert alert_name(None) is None and alert_name("0000") is None
    required = ["8F3F", "810D", "8F0F", "8F72", "8F35", "8F36", "8F57", "8F1D", "8F12", "8F66", "8F67", "8F8B", "8071"]
    required += [f"8F{n:02X}" for n in range(0x20, 0x2E)]
    assert [code for code in required if code not in ALERT_NAMES] == []
    assert all(len(code) == 4 and code == code.upper() for code in ALERT_NAMES)


# ----------------------------------------------------------------- CLI


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="alert-timing")
    gbcs_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_json_keys_values_and_exit_code(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    hex_file = tmp_path / "alert.hex"
    hex_file.write_text(MAC_FRAME.hex(" ") + "\n")
    binary_file = tmp_path / "alert.bin"
    binary_file.write_bytes(GBZ_FRAME)
    deviation_frame = signed_block(content=dlms_content(date_time=bytes.fromhex("07E7 0601 04 0B0F000C FFC4 00")))
    items = [DLMS_FRAME.hex(), base64.b64encode(ENCRYPTED_RESPONSE).decode(), str(hex_file), str(binary_file), deviation_frame.hex()]
    assert gbcs_cli.run(parse(["gbcs", "decode", "--json", *items])) == 0
    lines = capsys.readouterr().out.splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 5
    for record in records:
        assert list(record) == [
            "cra_flag", "originator_counter", "originator", "recipient", "message_code",
            "alert_code", "alert_time", "mac_header", "encrypted", "pre_command", "error",
        ]
    assert records[0] == {
        "cra_flag": "alert",
        "originator_counter": 4660,
        "originator": "00-11-22-33-44-55-66-77",
        "recipient": "90-B3-D5-1F-30-01-00-00",
        "message_code": "1000",
        "alert_code": "8F3F",
        "alert_time": "2023-06-01T10:15:00Z",
        "mac_header": False,
        "encrypted": False,
        "pre_command": False,
        "error": None,
    }
    assert (records[1]["cra_flag"], records[1]["alert_code"], records[1]["encrypted"]) == ("response", None, True)
    assert (records[2]["message_code"], records[2]["mac_header"]) == ("1001", True)
    assert (records[3]["alert_code"], records[3]["originator_counter"]) == ("8F1D", 3000)
    assert records[4]["alert_time"] == "2023-06-01T10:15:00.120Z"


def test_cli_pre_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert gbcs_cli.run(parse(["gbcs", "decode", "--json", PRE_COMMAND_FRAME.hex(), COMMAND_FRAME.hex()])) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["cra_flag"], r["message_code"], r["pre_command"], r["error"]) for r in records] == [
        ("command", "0102", True, None),
        ("command", "0062", False, None),
    ]
    assert gbcs_cli.run(parse(["gbcs", "decode", PRE_COMMAND_FRAME.hex()])) == 0
    assert "pre_command         yes" in capsys.readouterr().out


def test_cli_json_failure_sets_error_and_nulls(capsys: pytest.CaptureFixture[str]) -> None:
    assert gbcs_cli.run(parse(["gbcs", "decode", "--json", DLMS_FRAME.hex(), "nonsense!", DLMS_FRAME[:-1].hex()])) == 1
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records[0]["error"] is None
    for failed in records[1:]:
        assert failed["error"]
        assert [key for key, value in failed.items() if value is not None] == ["error"]


def test_cli_text_block(capsys: pytest.CaptureFixture[str]) -> None:
    assert gbcs_cli.run(parse(["gbcs", "decode", DLMS_FRAME.hex(), "DF09"])) == 1
    out = capsys.readouterr().out
    assert "alert_code          8F3F (Unauthorised Physical Access - Tamper Detect)" in out
    assert "alert_time          2023-06-01T10:15:00Z" in out
    assert "error" in out and "Traceback" not in out


def test_cli_missing_file_is_reported_not_raised(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    unreadable = tmp_path / "folder"
    unreadable.mkdir()
    assert gbcs_cli.run(parse(["gbcs", "decode", "--json", str(unreadable)])) == 1
    assert json.loads(capsys.readouterr().out)["error"]


@pytest.mark.parametrize("argv", [["gbcs", "--help"], ["gbcs", "decode", "--help"]])
def test_cli_help_at_every_level(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse(argv)
    assert stopped.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_format_time() -> None:
    assert gbcs_cli.format_time(None) is None
    assert gbcs_cli.format_time(WHEN) == "2023-06-01T10:15:00Z"
    assert gbcs_cli.format_time(WHEN.replace(microsecond=5_000)) == "2023-06-01T10:15:00.005Z"
    other_zone = WHEN.astimezone(timezone(timedelta(hours=1)))
    assert gbcs_cli.format_time(other_zone) == "2023-06-01T10:15:00Z"
