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


from shared.gbcs.decoding import decode, decode_item
from shared.gbcs.encoding import build_alert, build_response, encode
from shared.gbcs.message import (
    ACB_EUI,
    CONTENT_FORMATS,
    NETWORK_OPERATOR_EUI,
    SUPPLIER_EUI,
    ContentFormat,
    GbcsError,
    GbcsMessage,
    ber_length,
    eui_bytes,
    format_eui,
    is_alert,
    is_to_acb,
    normalize_eui,
)

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
