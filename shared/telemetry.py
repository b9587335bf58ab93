"""Logging (structlog: JSON lines, or readable console on a TTY) for every command."""

from __future__ import annotations

import logging
import os
import sys

import structlog


def setup_logging(service: str, level: str | None = None) -> None:
    level_name = (level or os.environ.get("ALERT_TIMING_LOG_LEVEL", "INFO")).upper()
    numeric = getattr(logging, level_name, logging.INFO)
    renderer: structlog.types.Processor
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


def _service(name: str) -> structlog.types.Processor:
    def add(_: object, __: str, event: dict) -> dict:
        event.setdefault("service", name)
        return event

    return add
