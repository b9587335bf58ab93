"""Operations commands ``tail``, ``trace``, ``status`` and ``docs``, one module each.

- ``tail`` follows live traffic with a core NATS subscription (works for a read-only user),
  or with ``--from-start`` reads the JetStream history first and then keeps following.
- ``trace`` reads the event log (AST_IN, AST_EVENTS, AST_OUT) and prints one alert's journey.
- ``status`` shows the streams, every service's durable consumer and the rejection counts.
- ``docs`` writes the AsyncAPI 3.0 document of every subject (``docs/asyncapi.json``).

Every command reads ``NATS_URL`` (and the other ``NATS_*`` settings) unless ``--nats-url``
is given, and reports problems as one line on stderr, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from alert_timing.ops.common import DEFAULT_DOCS_PATH, PROG, command
from alert_timing.ops.docs import cmd_docs
from alert_timing.ops.status import status_command
from alert_timing.ops.tail import tail_command
from alert_timing.ops.trace import trace_command
from shared import subjects as s


def _nats_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nats-url", help="NATS server URL(s), comma-separated (default: $NATS_URL)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


cmdtail_command = command("tail", tail_command, interrupted=0)
cmdtrace_command = command("trace", trace_command)
cmdstatus_command = command("status", status_command)


def add_parsers(subparsers: Any) -> None:
    """Add ``tail``, ``trace``, ``status`` and ``docs`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "tail", help="follow live events, one readable line each",
        description="Follow the subjects matching SUBJECT_PATTERN (default ast.>) with a core NATS "
                    "subscription: one line per message (per event inside an envelope) with the time, "
                    "subject, ids and key fields. --from-start reads the JetStream history first "
                    "(in stream-time order) and then keeps following. Ctrl-C stops (exit 0).")
    p.add_argument("subject", nargs="?", default=f"{s.PREFIX}.>", metavar="SUBJECT_PATTERN",
                   help="subjects to follow, NATS wildcards allowed (default %(default)s)")
    _nats_arg(p)
    p.add_argument("--json", action="store_true", help="print each message's JSON as it is, one per line")
    p.add_argument("--count", type=_positive, metavar="N", help="stop after N lines")
    p.add_argument("--from-start", action="store_true",
                   help="read the history kept in the streams first, then follow")
    p.set_defaults(func=cmdtail_command)

    p = subparsers.add_parser(
        "trace", help="print one alert's journey through every stage",
        description="Read one alert's messages from the event log (AST_IN, AST_EVENTS, AST_OUT) by "
                    "sequence, found through the trace index (AST_INDEX, written by every stage), and print "
                    "every event about it in time order: the inbound message, capture, enrichment, the deliveries "
                    "expected (with the DCC alerts it raised), deliver notices, delivery attempts, AST "
                    "records with their revisions and any rejection mentioning it; then the timing points "
                    "and legs per delivery. DCC alert deliveries are found by their parent's response id. "
                    "The points the journey must have follow from what it shows (an alert's input, capture, "
                    "enrichment; per delivery its expectation, deliver notice and record; the delivery-log "
                    "line and attempt its record's status calls for): any the index does not name are looked "
                    "for in a bounded scan from the input's store time (--window), and any still missing are "
                    "named on one line ('not found: ...'). "
                    "An id the index does not hold at all (an input too malformed to name its alert, history "
                    "from before the index) is looked for by scanning the whole log. "
                    "Exit 1 when nothing mentions RESPONSE_ID.")
    p.add_argument("response_id", metavar="RESPONSE_ID", help="the alert's responseId (messageId for CSP "
                                                               "Central/South) or a deliveryId")
    p.add_argument("--scan", action="store_true", help="scan the whole log instead of using the trace index")
    p.add_argument("--window", type=_positive_float, metavar="SECONDS",
                   help="how far after the input's store time to look for points the index does not name "
                        "(default: allowed lateness + handshake timeout + the 15-minute window + idle close)")
    _nats_arg(p)
    p.add_argument("--json", action="store_true", help="print the journey as one JSON object")
    p.set_defaults(func=cmdtrace_command)

    p = subparsers.add_parser(
        "status", help="streams, service consumers and rejection counts",
        description="Show each stream (messages, bytes, first/last sequence and time), each service's "
                    "durable consumer (pending, ack pending, redelivered, ack floor, push subscriber or "
                    "waiting pulls) and the rejected and dead-letter counts per stage. Exit 1 when a stream "
                    "or consumer is missing.")
    _nats_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmdstatus_command)

    p = subparsers.add_parser(
        "docs", help="write the AsyncAPI document of every subject",
        description="Write the AsyncAPI 3.0 document of every subject, its message schema (from "
                    "shared/events.py and the inbound formats), servers, channels and operations. "
                    "--check exits 1 when the file differs from what would be written.")
    p.add_argument("--out", default=str(DEFAULT_DOCS_PATH), metavar="PATH",
                   help="where to write it (default %(default)s; - for stdout)")
    p.add_argument("--check", action="store_true", help="only compare with PATH; exit 1 if it is stale")
    p.set_defaults(func=cmd_docs)


def main(argv: list[str] | None = None) -> int:
    """``python -m alert_timing.ops COMMAND ...``: the same commands outside the main CLI."""
    parser = argparse.ArgumentParser(prog=PROG, description="Operations commands of alert-timing.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_parsers(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
