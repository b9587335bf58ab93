"""The GBCS message as alert timing sees it: its fields, EUI-64 spellings, BER lengths, the byte constants."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, Literal

import msgspec

ACB_EUI: Final = "90-B3-D5-1F-30-00-00-02"
"""The DCC Access Control Broker: Device Alerts addressed to it are for the DSP itself."""
SUPPLIER_EUI: Final = "90-B3-D5-1F-30-01-00-00"
NETWORK_OPERATOR_EUI: Final = "90-B3-D5-1F-30-02-00-00"

ContentFormat = Literal["dlms", "gbz", "asn1", "none", "encrypted"]
CONTENT_FORMATS: Final[tuple[str, ...]] = ("dlms", "gbz", "asn1", "none", "encrypted")

GBZ_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)
GBZ_TIME_NOT_SET: Final = 0xFFFFFFFF

TAG_GENERAL_CIPHERING: Final = 0xDD
TAG_GENERAL_SIGNING: Final = 0xDF
TAG_DLMS_DATA_NOTIFICATION: Final = 0x0F
TAG_ASN1_SEQUENCE: Final = 0x30
SECURITY_AUTH_ONLY: Final = 0x11
SECURITY_AUTH_ENCRYPTED: Final = 0x31
MAC_LENGTH: Final = 12
SIGNATURE_LENGTH: Final = 64
SECURITY_HEADER_LENGTH: Final = 5
EMPTY_CIPHERING_FIELDS: Final = bytes(6)

CRA_NAMES: Final = {1: "command", 2: "response", 3: "alert"}
CRA_FLAGS: Final = {name: flag for flag, name in CRA_NAMES.items()}

# DF 09 cra counter(8) 08 eui(8) 08 eui(8) = 29 bytes, then at least
# date-time(1) + other-information(1 + 2) + content length(1) + signature length(1);
# a pre-command has no signature length byte.
FIXED_HEADER_LENGTH: Final = 29
MIN_SIGNED_LENGTH: Final = FIXED_HEADER_LENGTH + 6
MIN_PRE_COMMAND_LENGTH: Final = FIXED_HEADER_LENGTH + 5


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


def format_eui(raw: bytes) -> str:
    """Eight bytes as ``"90-B3-D5-1F-30-00-00-02"``."""
    return raw.hex("-").upper()


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
