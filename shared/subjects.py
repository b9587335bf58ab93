"""Every NATS subject and JetStream stream of the product, named once.

Inbound subjects carry the sources' bytes exactly as sent. Everything the
services append is a versioned JSON event (see ``shared.events``).
"""

from __future__ import annotations

import functools
import hashlib
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
WALL_CLOCK = "ast.wall-clock"  # metrics -> metrics, ".<partition>": wall-clock window closes

# Outbound contract subjects (one JSON object per message).
DELIVER = "ast.deliver"
RECORD = "ast.record"
REPORT_15M = "ast.report.15m"
REJECTED = "ast.rejected"  # ".<stage>"
DEAD_LETTER = "ast.dead-letter"  # ".<stage>", from max-deliveries advisories
DELIVERED = "ast.delivered"  # ".<partition>": window files that reached the DS&A landing zone
DELIVERY_BACKLOG = "ast.delivery-backlog"  # ".<partition>": what is still to deliver (last one counts)

# The trace index (written by every stage, read by `alert-timing trace`): ``ast.index.<key>``
# with ``key = index_key(response_id)``, one of INDEX_BUCKETS subjects; each message names its
# alert and lists where that stage stored the alert's messages (stream and sequence).
INDEX = "ast.index"
#: How many index subjects there are: bounded, so the server's per-subject memory is bounded
#: (~1 M subjects) whatever the history; an alert's bucket holds history / INDEX_BUCKETS entries.
INDEX_BUCKETS = 1 << 20


def rejected(stage: str) -> str:
    return f"{REJECTED}.{stage}"


def dead_letter(stage: str) -> str:
    return f"{DEAD_LETTER}.{stage}"


def index_key(response_id: str) -> str:
    """The subject token of an alert's index entries: its bucket, from a hash, so any response
    id (dots, wildcards, spaces, any length) makes a valid token and the subjects are bounded."""
    digest = hashlib.blake2b(response_id.encode(), digest_size=8).digest()
    return f"{int.from_bytes(digest, 'big') % INDEX_BUCKETS:05x}"


def index_subject(response_id: str) -> str:
    return f"{INDEX}.{index_key(response_id)}"


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


def wall_clock(partition: int) -> str:
    return f"{WALL_CLOCK}.{partition}"


# Streams: owned by the bootstrap step (``shared.bus.bootstrap``), nobody else.
STREAM_IN = "AST_IN"
STREAM_EVENTS = "AST_EVENTS"
STREAM_OUT = "AST_OUT"
STREAM_INDEX = "AST_INDEX"

STREAM_SUBJECTS: dict[str, list[str]] = {
    STREAM_IN: ["ast.in.>"],
    STREAM_EVENTS: [
        CAPTURED,
        ENRICHED,
        RESPONSE_SEEN,
        f"{EXPECTED}.*",
        f"{ATTEMPTED}.*",
        CLOCK,
        f"{WALL_CLOCK}.*",
        DELIVER,
        f"{REJECTED}.*",
        f"{DEAD_LETTER}.*",
    ],
    STREAM_OUT: [RECORD, REPORT_15M, f"{DELIVERED}.*", f"{DELIVERY_BACKLOG}.*"],
    STREAM_INDEX: [f"{INDEX}.*"],
}


def intersect(a: str, b: str) -> str | None:
    """The subjects two patterns both match, as one pattern (None when they share none)."""
    ta, tb = a.split("."), b.split(".")
    out: list[str] = []
    i = 0
    while True:
        if i == len(ta) and i == len(tb):
            return ".".join(out)
        if i < len(ta) and ta[i] == ">":
            return ".".join(out + tb[i:]) if i < len(tb) else None
        if i < len(tb) and tb[i] == ">":
            return ".".join(out + ta[i:])
        if i >= len(ta) or i >= len(tb):
            return None
        x, y = ta[i], tb[i]
        if x == "*":
            out.append(y)
        elif y == "*" or x == y:
            out.append(x)
        else:
            return None
        i += 1


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    return intersect(pattern, subject) == subject


@functools.lru_cache(maxsize=4096)
def stream_of(subject: str) -> str:
    """The stream that stores ``subject`` (its ``STREAM_SUBJECTS`` pattern), or "" for none."""
    for stream, patterns in STREAM_SUBJECTS.items():
        if any(subject_matches(p, subject) for p in patterns):
            return stream
    return ""

#: JetStream Object Store bucket of the metrics state snapshots (one pair of objects per partition).
METRICS_SNAPSHOTS = "metrics-snapshots"
#: The server's max-deliveries advisories, kept by a stream of their own so a dead-letter
#: copier that starts (or comes back) after the advisory was sent still finds it.
ADVISORY_MAX_DELIVERIES = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
STREAM_ADVISORIES = "AST_ADVISORIES"

# Service stages (names used for consumers, rejected subjects, users).
HUB_CAPTURE = "hub-capture"
CSP_ENRICHMENT = "csp-enrichment"
DSP_MAPPING = "dsp-mapping"
METRICS = "metrics"
SERVICES = (HUB_CAPTURE, CSP_ENRICHMENT, DSP_MAPPING, METRICS)
