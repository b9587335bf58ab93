"""Logs for every command: structlog JSON lines (a readable console on a TTY), with the current
span's trace ids, and the one warning line of a rejected input."""

from __future__ import annotations

import logging
import sys

import msgspec
import structlog
from opentelemetry import trace as otel_trace
from structlog.types import EventDict, Processor

from shared.events import RejectedInput
from shared.settings import load
from shared.telemetry.tracing import trace_fields

_log = structlog.get_logger()


def setup_logging(service: str, level: str | None = None) -> None:
    """Log lines at ``level`` and above (default: ALERT_TIMING_LOG_LEVEL, through ``Settings``)."""
    level_name = (level or load().log_level).upper()
    numeric = logging.getLevelNamesMapping().get(level_name, logging.INFO)
    renderer: Processor
    if sys.stderr.isatty():
        renderer = structlog.dev.ConsoleRenderer(colors=True)
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _service(service),
            add_trace_ids,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # faststream logs every batch at INFO: keep it to warnings and errors.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    logging.getLogger("faststream").setLevel(logging.WARNING)


def _service(name: str) -> Processor:
    def add(_: object, __: str, event: EventDict) -> EventDict:
        event.setdefault("service", name)
        return event

    return add


def add_trace_ids(_: object, __: str, event: EventDict) -> EventDict:
    """structlog: the current span's ids on every log line (a line about one alert passes
    its own, see ``trace_fields``)."""
    if "trace_id" in event:
        return event
    ctx = otel_trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event["trace_id"] = f"{ctx.trace_id:032x}"
        event["span_id"] = f"{ctx.span_id:016x}"
    return event


class _Ids(msgspec.Struct):
    """The identities a rejected input may carry (CSP North, CSP feeds, delivery log, events)."""

    responseId: str | None = None
    messageId: str | None = None
    deliveryId: str | None = None
    response_id: str | None = None
    delivery_id: str | None = None
    trace: str | None = None


_ids_decoder = msgspec.json.Decoder(_Ids)


def log_rejected(event: RejectedInput, trace: str | None = None) -> None:
    """One warning line for a rejected input: stage, reason, subject, stream sequence, and the
    alert's response id, delivery id and trace ids when the input says them."""
    try:
        ids = _ids_decoder.decode(event.raw)
    except (msgspec.DecodeError, TypeError):
        ids = _Ids()
    fields = trace_fields(trace or (event.headers or {}).get("traceparent") or ids.trace)
    delivery = ids.deliveryId or ids.delivery_id
    _log.warning("input rejected", stage=event.stage, reason=event.reason, detail=event.message[:200],
                 subject=event.subject, seq=event.source_seq,
                 response_id=ids.responseId or ids.messageId or ids.response_id,
                 **({"delivery_id": delivery} if delivery is not None else {}), **fields)
