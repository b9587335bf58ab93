"""Every NATS subject and JetStream stream of the product, named once.

Inbound subjects carry the sources' bytes exactly as sent. Everything the
services append is a versioned JSON event (see ``shared.events``).
"""

from __future__ import annotations

import zlib

from shared.events import Region

PREFIX = "ast"

# Inbound: raw bytes from the sources.
IN_CSP_NORTH = "ast.in.csp-north"
IN_CSP_CENTRAL = "ast.in.csp-central"
IN_CSP_SOUTH = "ast.in.csp-south"
IN_DSP_DELIVERY = "ast.in.dsp-delivery"
#: The DSP gateway's clock heartbeat: moves event time on when traffic stops.
IN_DSP_CLOCK = "ast.in.dsp-clock"

IN_CSP: dict[str, Region] = {
    IN_CSP_NORTH: "north",
    IN_CSP_CENTRAL: "central",
    IN_CSP_SOUTH: "south",
}

# Intermediate events (batches of events, one JSON envelope per message).
CAPTURED = "ast.captured"  # hub-capture -> csp-enrichment
ENRICHED = "ast.enriched"  # csp-enrichment -> dsp-mapping
RESPONSE_SEEN = "ast.response-seen"  # csp-enrichment -> metrics (counted, not alerts)
EXPECTED = "ast.expected"  # dsp-mapping -> metrics, ".<partition>"
ATTEMPTED = "ast.attempted"  # dsp-mapping -> metrics, ".<partition>"
CLOCK = "ast.clock"  # dsp-mapping -> metrics (every partition)

# Outbound contract subjects (one JSON object per message).
DELIVER = "ast.deliver"
RECORD = "ast.record"
REPORT_15M = "ast.report.15m"
REJECTED = "ast.rejected"  # ".<stage>"
DEAD_LETTER = "ast.dead-letter"  # ".<stage>", from max-deliveries advisories
DELIVERED = "ast.delivered"  # ".<partition>": window files that reached the DS&A landing zone
DELIVERY_BACKLOG = "ast.delivery-backlog"  # ".<partition>": what is still to deliver (last one counts)


def rejected(stage: str) -> str:
    return f"{REJECTED}.{stage}"


def dead_letter(stage: str) -> str:
    return f"{DEAD_LETTER}.{stage}"


def delivered(partition: int) -> str:
    return f"{DELIVERED}.{partition}"


def delivery_backlog(partition: int) -> str:
    return f"{DELIVERY_BACKLOG}.{partition}"


def partition_of(delivery_id: str, partitions: int) -> int:
    """Stable partition of a delivery: the same id always lands in the same place."""
    if partitions <= 1:
        return 0
    return zlib.crc32(delivery_id.encode()) % partitions


def expected(partition: int) -> str:
    return f"{EXPECTED}.{partition}"


def attempted(partition: int) -> str:
    return f"{ATTEMPTED}.{partition}"


# Streams: owned by the bootstrap step (``shared.bus.bootstrap``), nobody else.
STREAM_IN = "AST_IN"
STREAM_EVENTS = "AST_EVENTS"
STREAM_OUT = "AST_OUT"

STREAM_SUBJECTS: dict[str, list[str]] = {
    STREAM_IN: ["ast.in.>"],
    STREAM_EVENTS: [
        CAPTURED,
        ENRICHED,
        RESPONSE_SEEN,
        f"{EXPECTED}.*",
        f"{ATTEMPTED}.*",
        CLOCK,
        DELIVER,
        f"{REJECTED}.*",
        f"{DEAD_LETTER}.*",
    ],
    STREAM_OUT: [RECORD, REPORT_15M, f"{DELIVERED}.*", f"{DELIVERY_BACKLOG}.*"],
}

# Service stages (names used for consumers, rejected subjects, users).
HUB_CAPTURE = "hub-capture"
CSP_ENRICHMENT = "csp-enrichment"
DSP_MAPPING = "dsp-mapping"
METRICS = "metrics"
SERVICES = (HUB_CAPTURE, CSP_ENRICHMENT, DSP_MAPPING, METRICS)
