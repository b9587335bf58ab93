"""``alert-timing gbcs decode [--json] ITEM...``: decode GBCS messages for people and scripts.

ITEM is a GBCS message as hex (spaces allowed) or Base64, or the path of a file
holding either (or the raw bytes). ``--json`` prints one JSON object per ITEM,
one per line, with the keys of :data:`JSON_KEYS` in that order (``pre_command``
is true for an unsigned pre-command, which has no signature length); ``error`` is
null, or the reason the ITEM could not be decoded (all other keys null then).
Exit status: 0 when every ITEM decoded, 1 when any failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

from shared.alert_codes import alert_name
from shared.gbcs import ACB_EUI, NETWORK_OPERATOR_EUI, SUPPLIER_EUI, GbcsError, GbcsMessage, decode, decode_item

__all__ = ["JSON_KEYS", "add_parser", "decode_items", "format_time", "main", "run"]

JSON_KEYS: Final = (
    "cra_flag",
    "originator_counter",
    "originator",
    "recipient",
    "message_code",
    "alert_code",
    "alert_time",
    "mac_header",
    "encrypted",
    "pre_command",
    "error",
)
_MAX_FILE_BYTES: Final = 16 * 1024 * 1024
_KNOWN_PARTIES: Final = {
    ACB_EUI: "Access Control Broker",
    SUPPLIER_EUI: "supplier (test data)",
    NETWORK_OPERATOR_EUI: "network operator (test data)",
}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``gbcs`` command (with its ``decode`` subcommand) to an argparse subparsers object."""
    gbcs = subparsers.add_parser(
        "gbcs",
        help="decode GBCS payloads (smart-meter alerts and responses)",
        description="Work with GBCS messages, the payloads of smart-meter alerts and service responses.",
    )
    commands = gbcs.add_subparsers(dest="gbcs_command", metavar="COMMAND")
    commands.required = True
    decode_parser = commands.add_parser(
        "decode",
        help="decode GBCS messages given as hex, Base64 or files",
        description=(
            "Decode GBCS messages (alerts, responses, commands and unsigned pre-commands) and show "
            "the header fields, alert code and alert time. "
            "Exit status 0 when every ITEM decoded, 1 when any failed."
        ),
    )
    decode_parser.add_argument(
        "items",
        nargs="+",
        metavar="ITEM",
        help="a GBCS message as hex (spaces allowed) or Base64, or a file holding one",
    )
    decode_parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per ITEM, one per line",
    )
    gbcs.set_defaults(func=run)
    return gbcs


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Carry out a parsed ``gbcs`` command; return the exit status."""
    out = sys.stdout if out is None else out
    command = getattr(args, "gbcs_command", None)
    if command != "decode":
        print(f"alert-timing gbcs: unknown command {command!r}", file=sys.stderr)
        return 2
    failed = False
    for index, (item, message, error) in enumerate(decode_items(args.items), start=1):
        failed = failed or error is not None
        if args.json:
            out.write(json.dumps(_json_record(message, error)) + "\n")
        else:
            if index > 1:
                out.write("\n")
            out.write(_text_block(index, item, message, error))
    out.flush()
    return 1 if failed else 0


def decode_items(items: list[str]) -> list[tuple[str, GbcsMessage | None, str | None]]:
    """Decode each ITEM; (item, message, None) on success, (item, None, reason) on failure."""
    results: list[tuple[str, GbcsMessage | None, str | None]] = []
    for item in items:
        try:
            results.append((item, _decode_one(item), None))
        except GbcsError as exc:
            results.append((item, None, str(exc)))
        except OSError as exc:
            results.append((item, None, f"cannot read {item}: {exc.strerror or exc}"))
        except Exception as exc:  # noqa: BLE001 - never a traceback for a user: report and go on
            results.append((item, None, f"unexpected {type(exc).__name__}: {exc}"))
    return results


def _decode_one(item: str) -> GbcsMessage:
    path = _existing_file(item)
    if path is None:
        return decode_item(item)
    if path.stat().st_size > _MAX_FILE_BYTES:
        raise GbcsError(f"{item}: file larger than {_MAX_FILE_BYTES // (1024 * 1024)} MiB")
    raw = path.read_bytes()
    if raw[:1] in (b"\xdd", b"\xdf"):
        return decode(raw)  # the binary message itself
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise GbcsError(f"{item}: file holds neither hex, Base64 nor a binary GBCS message") from None
    return decode_item(text)


def _existing_file(item: str) -> Path | None:
    if not item or "\n" in item or len(item) > 4096:
        return None
    try:
        path = Path(item)
        return path if path.is_file() else None
    except (OSError, ValueError):
        return None


def format_time(moment: datetime | None) -> str | None:
    """ISO 8601 UTC: ``2023-06-01T10:15:00Z``, or ``2023-06-01T10:15:00.120Z`` when not whole seconds."""
    if moment is None:
        return None
    utc = moment.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond // 1000:03d}"
    return text + "Z"


def _json_record(message: GbcsMessage | None, error: str | None) -> dict[str, Any]:
    if message is None:
        record: dict[str, Any] = dict.fromkeys(JSON_KEYS)
        record["error"] = error
        return record
    return {
        "cra_flag": message.cra_flag,
        "originator_counter": message.originator_counter,
        "originator": message.originator,
        "recipient": message.recipient,
        "message_code": message.message_code,
        "alert_code": message.alert_code,
        "alert_time": format_time(message.alert_time),
        "mac_header": message.mac_header,
        "encrypted": message.encrypted,
        "pre_command": message.pre_command,
        "error": None,
    }


def _text_block(index: int, item: str, message: GbcsMessage | None, error: str | None) -> str:
    lines = [f"[{index}] {_shorten(item)}"]
    if message is None:
        lines.append(f"  {'error':<19} {error}")
        return "\n".join(lines) + "\n"
    rows = [
        ("cra_flag", message.cra_flag),
        ("originator_counter", str(message.originator_counter)),
        ("originator", _party(message.originator)),
        ("recipient", _party(message.recipient)),
        ("message_code", message.message_code),
        ("alert_code", _alert(message)),
        ("alert_time", format_time(message.alert_time) or "-"),
        ("mac_header", "yes" if message.mac_header else "no"),
        ("encrypted", "yes" if message.encrypted else "no"),
        ("pre_command", "yes (unsigned, no signature length)" if message.pre_command else "no"),
    ]
    lines.extend(f"  {label:<19} {value}" for label, value in rows)
    return "\n".join(lines) + "\n"


def _alert(message: GbcsMessage) -> str:
    if message.alert_code is None:
        if message.encrypted:
            return "- (content encrypted)"
        return "-"
    name = alert_name(message.alert_code)
    return f"{message.alert_code} ({name})" if name else f"{message.alert_code} (name unknown)"


def _party(eui: str) -> str:
    known = _KNOWN_PARTIES.get(eui)
    return f"{eui} ({known})" if known else eui


def _shorten(item: str, limit: int = 60) -> str:
    flat = " ".join(item.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def main(argv: list[str] | None = None) -> int:
    """Run ``gbcs`` on its own: ``python -m alert_timing.gbcs_cli decode ITEM...``."""
    parser = argparse.ArgumentParser(prog="alert-timing")
    add_parser(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(["gbcs", *(sys.argv[1:] if argv is None else argv)])
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
