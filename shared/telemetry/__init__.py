"""Telemetry for every command and service, one module per signal: ``logging`` (structlog
lines with trace ids), ``tracing`` (one trace per alert, the alert-journey trace) and
``metrics`` (the OpenTelemetry instruments, typed). ``otel`` reads the standard OTEL_*
environment by the SDK's own names; the ALERT_TIMING_* settings come from ``Settings``."""
