"""docs: the AsyncAPI document of every subject."""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from alert_timing.ops.common import (
    EVENT_TIME_FIELDS,
    PROG,
    describe,
    note,
)
from services.dsp_mapping.core import DCC_ALERT_CODES, MAX_THROTTLED_COUNT, OUTCOMES
from services.hub_capture.core import MAX_OUTAGE_S
from services.runtime.validation import UINT32_MAX
from shared import bus
from shared import events as ev
from shared import subjects as s
from shared.csp_notifications import PowerOutageShape
from shared.settings import DEFAULT_NATS_URL, Settings

ASYNCAPI_VERSION = "3.0.0"
SCHEMA_REF = "#/components/schemas/{name}"
_TIMESTAMP_PATTERN = r"^[0-9]{14}\.[0-9]{3}$"


def _csp_timestamp(description: str, nullable: bool = False) -> dict:
    schema = {"type": "string", "pattern": _TIMESTAMP_PATTERN,
              "description": f"{description} (YYYYMMDDHHMMSS.SSS, UTC)",
              "examples": ["20230601101502.450"]}
    if nullable:
        text = schema.pop("description")
        return {"description": text, "anyOf": [schema, {"type": "null"}]}
    return schema


def inbound_schemas() -> dict[str, dict]:
    """JSON Schemas of the raw inbound objects, as hub-capture and dsp-mapping validate them."""
    defaults = Settings()
    outage = PowerOutageShape()
    limits = (f"Limits: the message at most {defaults.max_message_bytes} bytes (ALERT_TIMING_MAX_MESSAGE_BYTES), "
              f"JSON nested at most {defaults.max_json_depth} levels. Anything else is rejected whole "
              f"to ast.rejected.<stage> with a machine-readable reason.")
    hub_id = {"type": "integer", "minimum": 0, "maximum": UINT32_MAX,
              "description": "Comms Hub REP ID: unsigned 32-bit integer (up to 10 digits)"}
    payload = {"type": "string", "minLength": 1, "maxLength": defaults.max_payload_b64_chars,
               "contentEncoding": "base64",
               "description": "Base64 of the GBCS Service Response or Device Alert "
                              f"(at most {defaults.max_payload_b64_chars} characters: "
                              "ALERT_TIMING_MAX_PAYLOAD_B64_CHARS)"}

    def text(description: str, max_len: int = 128) -> dict:
        return {"type": "string", "minLength": 1, "maxLength": max_len, "description": description}

    return {
        "CspNorthRniMessage": {
            "title": "CspNorthRniMessage",
            "description": "CSP North RNI `sendMessage` JSON object, published unchanged. Fields other than "
                           "the ones listed are allowed and kept (AlertCaptured.extra). `timestamp` is when "
                           "the alert left CSP North; it stands for csp_received less "
                           "ALERT_TIMING_CSP_NORTH_OFFSET_MS (flag csp_received_mapped). " + limits,
            "type": "object",
            "properties": {
                "responseId": text("globally unique; the alert's identity for auditing"),
                "commsHubId": hub_id,
                "payload": payload,
                "timestamp": _csp_timestamp("when CSP North passed the alert to the DSP: csp_sent"),
                "HubTimestamp": _csp_timestamp("applied by the hub SDK: chf_received (optional)", nullable=True),
            },
            "required": ["responseId", "commsHubId", "payload", "timestamp"],
            "additionalProperties": True,
        },
        "CspFeedMessage": {
            "title": "CspFeedMessage",
            "description": "CSP Central / CSP South feed object, published unchanged; `messageId` plays the "
                           "part of `responseId` downstream. Other fields are allowed and kept. " + limits,
            "type": "object",
            "properties": {
                "messageId": text("globally unique; becomes response_id downstream"),
                "commsHubId": hub_id,
                "payload": payload,
                "chfReceivedTimestamp": _csp_timestamp("received by the Comms Hub: chf_received (optional)",
                                                       nullable=True),
                "cspReceivedTimestamp": _csp_timestamp("received by the CSP: csp_received"),
                "cspSentTimestamp": _csp_timestamp("passed to the DSP: csp_sent"),
            },
            "required": ["messageId", "commsHubId", "payload", "cspReceivedTimestamp", "cspSentTimestamp"],
            "additionalProperties": True,
        },
        "DeliveryLogLine": {
            "title": "DeliveryLogLine",
            "description": "One line of the DSP delivery log: one attempt to pass an alert (device alert or "
                           "DCC alert) to a Service User. A failed attempt has no acknowledgement; a later "
                           "line for the same delivery is a retry. " + limits,
            "type": "object",
            "properties": {
                "deliveryId": text("the delivery: the responseId for a device alert, "
                                   "<responseId>:<DCC code>:<n> for a DCC alert", 160),
                "responseId": text("the alert that caused the delivery"),
                "dccAlertCode": {"description": "the DCC alert delivered, or null for a device alert",
                                 "anyOf": [{"enum": sorted(DCC_ALERT_CODES)}, {"type": "null"}]},
                "serviceUserId": text("the Service User (EUI-64)"),
                "suPassedTimestamp": _csp_timestamp("passed to the Service User: su_passed (null when "
                                                    "throttled, required otherwise)", nullable=True),
                "suAcknowledgedTimestamp": _csp_timestamp(
                    "the Service User's handshake: su_acknowledged (required when outcome is acknowledged, "
                    "ignored when failed, null when throttled)", nullable=True),
                "outcome": {"enum": sorted(OUTCOMES), "description": (
                    "acknowledged, failed, or throttled: the DSP discarded the alert under Alert Storm "
                    "Protection (never passed; the record's status is throttled, never no_handshake)")},
                "throttledAlertCount": {
                    "description": "on a forwarded alert: how many identical alerts storm protection held back "
                                   "(DUIS ThrottledAlertCount); absent or null otherwise, and on a throttled line",
                    "anyOf": [{"type": "integer", "minimum": 0, "maximum": MAX_THROTTLED_COUNT}, {"type": "null"}]},
            },
            "required": ["deliveryId", "responseId", "serviceUserId", "outcome"],
            "allOf": [
                {"if": {"properties": {"outcome": {"const": "acknowledged"}}, "required": ["outcome"]},
                 "then": {"properties": {"suAcknowledgedTimestamp": {"type": "string"}},
                          "required": ["suPassedTimestamp", "suAcknowledgedTimestamp"]}},
                {"if": {"properties": {"outcome": {"const": "failed"}}, "required": ["outcome"]},
                 "then": {"properties": {"suPassedTimestamp": {"type": "string"}},
                          "required": ["suPassedTimestamp"]}},
                {"if": {"properties": {"outcome": {"const": "throttled"}}, "required": ["outcome"]},
                 "then": {"properties": {"suPassedTimestamp": {"type": "null"},
                                         "suAcknowledgedTimestamp": {"type": "null"},
                                         "throttledAlertCount": {"type": "null"}}}},
            ],
            "additionalProperties": True,
        },
        "CspPowerOutageNotification": {
            "title": "CspPowerOutageNotification",
            "description": (
                "ILLUSTRATIVE SHAPE: public sources do not say how a CSP notifies the DSP of a power outage, so "
                "this one is ours, and its field names are configuration (shared/csp_notifications.toml, or the "
                "file ALERT_TIMING_CSP_NOTIFICATIONS names; shown here with the packaged defaults). It may "
                "arrive on any CSP feed; a message with the type field is a notification, not an alert. An "
                f"outage of {outage.min_duration_s} s or more raises one DCC Alert {outage.dcc_alert_code} "
                f"(delivery <{outage.id_field}>:{outage.dcc_alert_code}:1) to {outage.service_user}; a "
                "shorter one raises nothing. Other fields are allowed and kept. " + limits),
            "type": "object",
            "properties": {
                outage.type_field: {"const": outage.type_value, "description": "marks a power-outage notification"},
                outage.id_field: text("unique per notification; becomes response_id downstream"),
                "commsHubId": hub_id,
                outage.duration_field: {"type": "integer", "minimum": 0, "maximum": MAX_OUTAGE_S,
                                        "description": "how long the Comms Hub has been without power, seconds"},
                outage.chf_received_field: _csp_timestamp(
                    "a last gasp received from the Comms Hub: chf_received (optional; null hub points without)",
                    nullable=True),
                outage.csp_received_field: _csp_timestamp("the CSP noticed the outage: csp_received"),
                outage.csp_sent_field: _csp_timestamp("passed to the DSP: csp_sent"),
            },
            "required": [outage.type_field, outage.id_field, "commsHubId", outage.duration_field,
                         outage.csp_received_field, outage.csp_sent_field],
            "additionalProperties": True,
        },
        "ClockHeartbeat": {
            "title": "ClockHeartbeat",
            "description": "The DSP gateway's clock: moves event time on (closes 15-minute windows) when "
                           "traffic stops. At most 4096 bytes.",
            "type": "object",
            "properties": {"time": _csp_timestamp("the DSP gateway's current time")},
            "required": ["time"],
            "additionalProperties": True,
        },
        "InboundHeaders": {
            "title": "InboundHeaders",
            "description": "NATS headers of an inbound message (all optional).",
            "type": "object",
            "properties": {
                "Dsp-Received-Timestamp": _csp_timestamp(
                    "the DSP gateway's receive time: dsp_received (absent: the stream's own time)"),
                "traceparent": {"type": "string", "description": "W3C trace context of the alert's trace"},
                "Nats-Msg-Id": {"type": "string", "description": "JetStream de-duplication id"},
            },
        },
        "EventHeaders": {
            "title": "EventHeaders",
            "description": "NATS headers of a message the services publish.",
            "type": "object",
            "properties": {
                "Nats-Msg-Id": {"type": "string", "description": (
                    "deterministic id, so a redelivered input gives the same message and JetStream drops the "
                    "copy: batch:<hash of the event ids>, dlv:<delivery_id>, rec:<delivery_id>:<revision>, "
                    "report:<partition>:<window_start>:<revision>, rej:<stage>:<subject>:<seq>")},
            },
            "required": ["Nats-Msg-Id"],
        },
    }


#: Intermediate subjects: the event type inside their envelopes.
ENVELOPES: dict[str, tuple[str, ...]] = {
    "captured": ("AlertCaptured", "CapturedBatch", "OutageNotified"),
    "enriched": ("AlertEnriched", "EnrichedBatch", "OutageNotified"),
    "responseSeen": ("ServiceResponseSeen", "ResponseSeenBatch"),
    "expected": ("DeliveryExpected", "ExpectedBatch"),
    "attempted": ("DeliveryAttempted", "AttemptedBatch"),
    "clock": ("ClockTick", "ClockBatch"),
    "wallClock": ("WallClock", "WallClockBatch"),
}


@dataclass(frozen=True)
class Channel:
    id: str
    address: str
    message: str
    description: str
    parameters: dict[str, dict] = field(default_factory=dict)
    #: Further messages the channel carries.
    also: tuple[str, ...] = ()


def channels() -> list[Channel]:
    partition = {"partition": {"description": "metrics partition of the delivery: "
                                              "crc32(delivery_id) % ALERT_TIMING_METRICS_PARTITIONS",
                               "examples": ["0"]}}
    stage = {"stage": {"description": "the stage that could not use the input", "enum": list(s.SERVICES)}}
    return [
        Channel("inCspNorth", s.IN_CSP_NORTH, "CspNorthRni",
                "CSP North RNI messages and power-outage notifications, the bytes exactly as sent.",
                also=("CspPowerOutage",)),
        Channel("inCspCentral", s.IN_CSP_CENTRAL, "CspCentralFeed",
                "CSP Central feed messages and power-outage notifications, the bytes exactly as sent.",
                also=("CspPowerOutage",)),
        Channel("inCspSouth", s.IN_CSP_SOUTH, "CspSouthFeed",
                "CSP South feed messages and power-outage notifications, the bytes exactly as sent.",
                also=("CspPowerOutage",)),
        Channel("inDspDelivery", s.IN_DSP_DELIVERY, "DeliveryLogLine",
                "The DSP delivery log, one line per message, as written."),
        Channel("inDspClock", s.IN_DSP_CLOCK, "ClockHeartbeat", "The DSP gateway's clock heartbeat."),
        Channel("captured", s.CAPTURED, "CapturedBatch",
                "Alerts captured by hub-capture: parsed, validated, timing points captured; and CSP "
                "power-outage notifications (OutageNotified)."),
        Channel("enriched", s.ENRICHED, "EnrichedBatch",
                "Alerts with the GBCS header decoded and CSP times mapped; power-outage notifications "
                "passed on unchanged."),
        Channel("responseSeen", s.RESPONSE_SEEN, "ResponseSeenBatch",
                "GBCS Service Responses seen on the alert interface: counted, not reported as alerts."),
        Channel("expected", f"{s.EXPECTED}.{{partition}}", "ExpectedBatch",
                "Deliveries the DSP makes: one per device alert, one per DCC alert raised.", partition),
        Channel("attempted", f"{s.ATTEMPTED}.{{partition}}", "AttemptedBatch",
                "Delivery log lines, validated.", partition),
        Channel("clock", s.CLOCK, "ClockBatch", "The DSP gateway's clock, read by every metrics partition."),
        Channel("wallClock", f"{s.WALL_CLOCK}.{{partition}}", "WallClockBatch",
                "A metrics partition's own decision to move event time on by the wall clock (a quiet "
                "stream, a silent delivery log), put in the log so that a replay or a restart closes the "
                "same windows with the same revisions.", partition),
        Channel("deliver", s.DELIVER, "DeliverNotice",
                "One alert the DSP passes to a Service User (read by the Service User side)."),
        Channel("record", s.RECORD, "AstRecord",
                "The AST log: one delivered alert's timing points and legs; a late fact gives revision n+1."),
        Channel("report15m", s.REPORT_15M, "WindowReport",
                "One 15-minute window (by dsp_received), revision n; a late event gives revision n+1."),
        Channel("delivered", f"{s.DELIVERED}.{{partition}}", "WindowDelivered",
                "A window revision's files arrived at the DS&A landing zone (File Gateway), checksums last.",
                partition),
        Channel("deliveryBacklog", f"{s.DELIVERY_BACKLOG}.{{partition}}", "DeliveryBacklog",
                "What a metrics partition still has to deliver to DS&A (the last one counts).", partition),
        Channel("rejected", f"{s.REJECTED}.{{stage}}", "RejectedInput",
                "Inputs a stage could not use, kept whole with a machine-readable reason.", stage),
        Channel("deadLetter", f"{s.DEAD_LETTER}.{{stage}}", "DeadLetter",
                "Inputs a stage's consumer gave up on after max_deliver attempts "
                "(from JetStream max-deliveries advisories).", stage),
        Channel("index", f"{s.INDEX}.{{key}}", "IndexEntry",
                "The trace index: per batch and alert, where a stage stored the alert's inputs and outputs; "
                "read by `alert-timing trace`.",
                {"key": {"description": "the response id's bucket: blake2b-64 of it modulo 2^20, "
                                        "five hex digits (shared.subjects.index_key)",
                         "examples": [s.index_key("N0007000000001")]}}),
    ]


#: Who publishes on each channel (receivers come from ``shared.bus.consumer_specs``).
SENDERS: list[tuple[str, str]] = [
    (s.HUB_CAPTURE, "captured"), (s.HUB_CAPTURE, "rejected"),
    (s.CSP_ENRICHMENT, "enriched"), (s.CSP_ENRICHMENT, "responseSeen"), (s.CSP_ENRICHMENT, "rejected"),
    (s.DSP_MAPPING, "deliver"), (s.DSP_MAPPING, "expected"), (s.DSP_MAPPING, "attempted"),
    (s.DSP_MAPPING, "clock"), (s.DSP_MAPPING, "rejected"),
    (s.METRICS, "record"), (s.METRICS, "report15m"), (s.METRICS, "rejected"), (s.METRICS, "wallClock"),
    (s.METRICS, "delivered"), (s.METRICS, "deliveryBacklog"),
    *((service, "index") for service in s.SERVICES),
]
#: The parties outside the services.
EXTERNAL: list[tuple[str, str, str, str]] = [
    ("csp-north", "send", "inCspNorth", "CSP North's RNI passes alerts on (bridge or `alert-timing ingest`)"),
    ("csp-central", "send", "inCspCentral", "CSP Central's feed"),
    ("csp-south", "send", "inCspSouth", "CSP South's feed"),
    ("dsp-gateway", "send", "inDspDelivery", "the DSP delivery log"),
    ("dsp-gateway", "send", "inDspClock", "the DSP gateway's clock heartbeat"),
    ("service-users", "receive", "deliver", "the Service User side answers each delivery in the delivery log"),
    ("dsa", "receive", "record", "DS&A / regulator reporting reads the AST log"),
    ("dsa", "receive", "report15m", "DS&A / regulator reporting reads the 15-minute reports"),
    ("dsa", "receive", "delivered", "DS&A learns which window files reached its File Gateway"),
]


def _camel(*parts: str) -> str:
    words = [w for p in parts for w in p.replace("-", " ").replace(".", " ").split()]
    return words[0].lower() + "".join(w[:1].upper() + w[1:] for w in words[1:])


def _address_matches(address: str, subject: str) -> bool:
    """Whether a channel address (``{param}`` = one token) covers a subject or filter pattern."""
    pattern = ".".join("*" if t.startswith("{") else t for t in address.split("."))
    return s.subject_matches(pattern, subject)


def _clean(schema: Any) -> Any:
    """Tidy msgspec's output for the document: docstrings dedented; OpenAPI's discriminator object
    becomes AsyncAPI's discriminator (the property name)."""
    if isinstance(schema, dict):
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key == "description" and isinstance(value, str):
                out[key] = inspect.cleandoc(value)
            elif key == "discriminator" and isinstance(value, dict):
                out[key] = value.get("propertyName")
            else:
                out[key] = _clean(value)
        return out
    if isinstance(schema, list):
        return [_clean(v) for v in schema]
    return schema


def event_schemas() -> dict[str, dict]:
    """JSON Schemas of the events and contract objects (from the msgspec structs)."""
    types: list[Any] = [ev.Batch, ev.DeliverNotice, ev.AstRecord, ev.RejectedInput, ev.WindowDelivered,
                        ev.DeliveryBacklog, ev.IndexEntry]
    report = getattr(ev, "WindowReport", None)
    if report is not None:
        types.append(report)
    _, components = msgspec.json.schema_components(types, ref_template=SCHEMA_REF)
    components = _clean(components)
    for name, schema in components.items():
        props = schema.get("properties", {})
        for key, prop in props.items():
            if "description" in prop:
                continue
            if key in EVENT_TIME_FIELDS:
                if name == "AstRecord":
                    prop["description"] = "ISO 8601 UTC with milliseconds, null when missing"
                else:
                    prop["description"] = "UTC epoch milliseconds"
            elif key.endswith("_ms") and name == "AstRecord":
                prop["description"] = "milliseconds; negative means clock skew (flagged), null when a point is missing"
            elif key == "v":
                prop["description"] = "schema version"
    if report is None:
        components["WindowReport"] = {"title": "WindowReport", "type": "object",
                                      "description": "15-minute window report (schema not published yet)"}
    for event, envelope, *others in ENVELOPES.values():
        kinds = [event, *others]
        items: dict[str, Any] = {"$ref": SCHEMA_REF.format(name=event)}
        if others:
            items = {"oneOf": [{"$ref": SCHEMA_REF.format(name=k)} for k in kinds], "discriminator": "type"}
        components[envelope] = {
            "title": envelope,
            "description": f"Envelope of {' and '.join(kinds)} events: several events in one message (fewer "
                           f"broker round trips). Each event carries its own `v` and deterministic `event_id`.",
            "type": "object",
            "properties": {
                "v": {"type": "integer", "default": ev.SCHEMA_VERSION, "description": "envelope schema version"},
                "events": {"type": "array", "items": items},
            },
            "required": ["events"],
        }
    return components


def asyncapi_document() -> dict:
    """The AsyncAPI 3.0 document of every subject of the product (deterministic)."""
    from importlib import metadata

    try:
        version = metadata.version("alert-timing")
    except metadata.PackageNotFoundError:
        version = "0.0.0"
    schemas = {**event_schemas(), **inbound_schemas()}
    ref = SCHEMA_REF.format
    stream_of = {}
    for chan in channels():
        probe = ".".join("x" if t.startswith("{") else t for t in chan.address.split("."))
        stream_of[chan.id] = next((name for name, subs in s.STREAM_SUBJECTS.items()
                                   if any(s.subject_matches(sub, probe) for sub in subs)), None)

    def message(name: str, title: str, summary: str, payload: str, *, inbound: bool = False,
                correlation: str | None = None, examples: list | None = None) -> dict:
        msg: dict[str, Any] = {
            "name": name,
            "title": title,
            "summary": summary,
            "contentType": "application/json",
            "payload": {"$ref": ref(name=payload)},
            "headers": {"$ref": ref(name="InboundHeaders" if inbound else "EventHeaders")},
        }
        if not inbound:
            msg["x-schema-version"] = ev.SCHEMA_VERSION
        if correlation:
            msg["correlationId"] = {"location": f"$message.payload#/{correlation}"}
        if examples:
            msg["examples"] = examples
        return msg

    north_example = {"responseId": "R1", "commsHubId": 4000000001, "payload": "3wkDAAAAAAAAAAcI...",
                     "timestamp": "20230601101502.450", "HubTimestamp": "20230601101500.100"}
    feed_example = {"messageId": "C1", "commsHubId": 12, "payload": "3wkDAAAAAAAAAAcI...",
                    "chfReceivedTimestamp": "20230601101500.000", "cspReceivedTimestamp": "20230601101501.800",
                    "cspSentTimestamp": "20230601101502.000"}
    log_example = {"deliveryId": "R1", "responseId": "R1", "dccAlertCode": None,
                   "serviceUserId": "90-B3-D5-1F-30-01-00-00", "suPassedTimestamp": "20230601101502.700",
                   "suAcknowledgedTimestamp": "20230601101503.100", "outcome": "acknowledged"}
    throttled_example = {"deliveryId": "R2", "responseId": "R2", "dccAlertCode": None,
                         "serviceUserId": "90-B3-D5-1F-30-01-00-00", "suPassedTimestamp": None,
                         "suAcknowledgedTimestamp": None, "outcome": "throttled"}
    dsp_header = {"Dsp-Received-Timestamp": "20230601101502.500"}
    outage = PowerOutageShape()
    outage_example = {outage.type_field: outage.type_value, outage.id_field: "PO-000001", "commsHubId": 1234567,
                      outage.duration_field: 240, outage.csp_received_field: "20230601101500.000",
                      outage.csp_sent_field: "20230601101500.120"}
    messages = {
        "CspNorthRni": message("CspNorthRni", "CSP North RNI message", "An alert (or Service Response) from "
                               "CSP North", "CspNorthRniMessage", inbound=True, correlation="responseId",
                               examples=[{"headers": dsp_header, "payload": north_example}]),
        "CspCentralFeed": message("CspCentralFeed", "CSP Central feed message", "An alert from CSP Central",
                                  "CspFeedMessage", inbound=True, correlation="messageId",
                                  examples=[{"headers": dsp_header, "payload": feed_example}]),
        "CspSouthFeed": message("CspSouthFeed", "CSP South feed message", "An alert from CSP South",
                                "CspFeedMessage", inbound=True, correlation="messageId",
                                examples=[{"headers": dsp_header, "payload": feed_example}]),
        "DeliveryLogLine": message("DeliveryLogLine", "DSP delivery log line", "One delivery attempt",
                                   "DeliveryLogLine", inbound=True, correlation="responseId",
                                   examples=[{"payload": log_example}, {"payload": throttled_example}]),
        "ClockHeartbeat": message("ClockHeartbeat", "DSP clock heartbeat", "The DSP gateway's time",
                                  "ClockHeartbeat", inbound=True,
                                  examples=[{"payload": {"time": "20230601103000.000"}}]),
        "CspPowerOutage": message("CspPowerOutage", "CSP power-outage notification (illustrative shape)",
                                  "A Comms Hub without power, from any CSP: DCC Alert AD1 for 3 minutes or more",
                                  "CspPowerOutageNotification", inbound=True, correlation=outage.id_field,
                                  examples=[{"headers": dsp_header, "payload": outage_example}]),
        "DeliverNotice": message("DeliverNotice", "Deliver notice", "One alert passed to a Service User",
                                 "DeliverNotice", correlation="responseId"),
        "AstRecord": message("AstRecord", "AST record", "One delivered alert's timing points and legs",
                             "AstRecord", correlation="response_id"),
        "WindowReport": message("WindowReport", "15-minute report", "Counts and leg distributions of a window",
                                "WindowReport"),
        "RejectedInput": message("RejectedInput", "Rejected input", "An input a stage could not use",
                                 "RejectedInput"),
        "DeadLetter": message("DeadLetter", "Dead letter", "An input a consumer gave up on", "RejectedInput"),
        "WindowDelivered": message("WindowDelivered", "Window delivered", "A window's files at the DS&A landing zone",
                                   "WindowDelivered"),
        "DeliveryBacklog": message("DeliveryBacklog", "Delivery backlog", "Window files still to deliver to DS&A",
                                   "DeliveryBacklog"),
        "IndexEntry": message("IndexEntry", "Trace index entry",
                              "Where an alert's input or record, and the messages known with it, are stored "
                              "(stream, sequence)", "IndexEntry"),
    }
    for event, envelope, *_ in ENVELOPES.values():
        messages[envelope] = message(envelope, f"{event} envelope", f"{event} events in a batch envelope",
                                     envelope)

    chans = {c.id: c for c in channels()}
    doc_channels: dict[str, Any] = {}
    for c in chans.values():
        entry: dict[str, Any] = {
            "address": c.address,
            "title": c.address,
            "description": c.description,
            "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in (c.message, *c.also)},
            "x-jetstream-stream": stream_of[c.id],
        }
        if c.parameters:
            entry["parameters"] = c.parameters
        doc_channels[c.id] = entry

    operations: dict[str, Any] = {}

    def operation(actor: str, action: str, channel_id: str, summary: str, extra: dict | None = None) -> None:
        c = chans[channel_id]
        op_id = _camel(actor, action, channel_id)
        operations[op_id] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{m}"} for m in (c.message, *c.also)],
            "summary": summary,
            "tags": [{"name": actor}],
            **(extra or {}),
        }

    for actor, action, channel_id, summary in EXTERNAL:
        operation(actor, action, channel_id, summary, {"x-external": True})
    for service, channel_id in SENDERS:
        operation(service, "send", channel_id, f"{service} publishes {chans[channel_id].address}")
    for spec in bus.consumer_specs(1):
        for subject in spec.filter_subjects:
            channel_id = next(c.id for c in chans.values() if _address_matches(c.address, subject))
            durable, filters = spec.durable, sorted(spec.filter_subjects)
            consumer: dict[str, Any] = {}
            if spec.service == s.METRICS:  # one durable per partition; documented as partition <p>
                durable = bus.metrics_durable(0).replace("0", "<partition>")
                filters = sorted(f.replace(".0", ".<partition>") for f in filters)
                consumer["note"] = (f"partition 0 also reads {s.RESPONSE_SEEN} and {s.REJECTED}.* "
                                    "(whole-network counts)")
            consumer |= {"stream": spec.stream, "durable": durable, "filterSubjects": filters,
                         "ackPolicy": "explicit", "maxDeliver": spec.max_deliver,
                         "ackWaitSeconds": spec.ack_wait_s, "maxAckPending": spec.max_ack_pending}
            if spec.push:  # pushed to a deliver group named after the durable (shared.bus.consumer_config)
                subject = spec.deliver_subject
                if spec.service == s.METRICS:
                    subject = subject.replace(bus.metrics_durable(0), durable)
                consumer |= {"deliverSubject": subject, "deliverGroup": durable}
            key = _camel(spec.service, "receive", channel_id)
            if key in operations:  # one durable per service input; several subjects may share a channel
                continue
            operation(spec.service, "receive", channel_id,
                      f"{spec.service} consumes {chans[channel_id].address} (durable {durable})",
                      {"x-jetstream-consumer": consumer})

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "alert-timing",
            "version": version,
            "description": (
                "Alert throughput timing for the GB smart-metering network: event-sourced services on NATS "
                "JetStream. Inbound subjects carry the sources' bytes exactly as sent; everything the services "
                "append is JSON (msgspec) carrying `v` (schema version) and a deterministic `event_id` that is "
                "also the `Nats-Msg-Id`. Times inside events are UTC epoch milliseconds; the contract objects "
                "(ast.deliver, ast.record, ast.report.15m) use the formats their readers expect. Generated by "
                "`alert-timing docs` from shared/subjects.py and shared/events.py."),
        },
        "defaultContentType": "application/json",
        "servers": {
            "nats": {
                "host": DEFAULT_NATS_URL.split("://", 1)[-1],
                "protocol": "nats",
                "description": "The NATS server with JetStream (`alert-timing up` runs one embedded; "
                               "set NATS_URL for a cluster).",
            },
        },
        "channels": doc_channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
        "x-schema-version": ev.SCHEMA_VERSION,
        "x-jetstream-streams": {name: list(subs) for name, subs in s.STREAM_SUBJECTS.items()},
    }


def render_asyncapi() -> str:
    return json.dumps(asyncapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def cmd_docs(args: argparse.Namespace) -> int:
    try:
        text = render_asyncapi()
    except Exception as exc:  # noqa: BLE001 - a schema the generator cannot express
        note(f"{PROG} docs: cannot build the AsyncAPI document: {type(exc).__name__}: {describe(exc)}")
        return 2
    if args.out == "-":
        sys.stdout.write(text)
        return 0
    path = Path(args.out)
    if args.check:
        try:
            current = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            note(f"{PROG} docs: {path} does not exist: run `{PROG} docs --out {path}`")
            return 1
        except OSError as exc:
            note(f"{PROG} docs: cannot read {path}: {describe(exc)}")
            return 2
        if current != text:
            note(f"{PROG} docs: {path} is out of date: run `{PROG} docs --out {path}`")
            return 1
        print(f"{path} is up to date")
        return 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        note(f"{PROG} docs: cannot write {path}: {describe(exc)}")
        return 2
    doc = json.loads(text)
    print(f"wrote {path}: {len(doc['channels'])} channels, {len(doc['operations'])} operations, "
          f"{len(doc['components']['messages'])} messages")
    return 0


# --------------------------------------------------------------------------- parsers
