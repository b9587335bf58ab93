"""The OpenTelemetry environment, read by the SDK's own variable names.

OTEL_SDK_DISABLED; OTEL_TRACES_EXPORTER and OTEL_METRICS_EXPORTER (otlp | console | none, or a
comma-separated list; unset: OTLP when an OTLP endpoint is given, else none);
OTEL_EXPORTER_OTLP_PROTOCOL and its per-signal forms (http/protobuf, the default, or grpc). The
exporters read their own endpoint, headers, timeout and batching variables
(OTEL_EXPORTER_OTLP_*, OTEL_BSP_*, OTEL_METRIC_EXPORT_INTERVAL), the tracer provider its sampler
(OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG) and the resource OTEL_SERVICE_NAME and
OTEL_RESOURCE_ATTRIBUTES. A value that cannot be used is a ``ConfigError``.
"""

from __future__ import annotations

import os
import socket
from typing import Literal

from opentelemetry.environment_variables import OTEL_METRICS_EXPORTER, OTEL_TRACES_EXPORTER
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_SDK_DISABLED,
)
from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, OTELResourceDetector, Resource
from opentelemetry.sdk.trace.export import SpanExporter

from shared.settings import ConfigError

Signal = Literal["traces", "metrics"]

#: The exporters a signal may name.
EXPORTERS = ("otlp", "console")

_EXPORTER_VAR = {"traces": OTEL_TRACES_EXPORTER, "metrics": OTEL_METRICS_EXPORTER}
_ENDPOINT_VAR = {"traces": OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "metrics": OTEL_EXPORTER_OTLP_METRICS_ENDPOINT}
_PROTOCOL_VAR = {"traces": OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, "metrics": OTEL_EXPORTER_OTLP_METRICS_PROTOCOL}


def sdk_disabled() -> bool:
    return os.environ.get(OTEL_SDK_DISABLED, "").strip().lower() == "true"


def exporter_names(signal: Signal) -> list[str]:
    """The exporters OTEL_<SIGNAL>_EXPORTER names (checked); unset: OTLP when an endpoint is given."""
    if sdk_disabled():
        return []
    variable = _EXPORTER_VAR[signal]
    explicit = os.environ.get(variable, "")
    if explicit.strip():
        names = [n.strip().lower() for n in explicit.split(",") if n.strip()]
        if "none" in names:
            return []
        for name in names:
            if name not in EXPORTERS:
                raise ConfigError(f"{variable}={name!r} is not one of otlp, console, none")
        return names
    endpoint = os.environ.get(OTEL_EXPORTER_OTLP_ENDPOINT) or os.environ.get(_ENDPOINT_VAR[signal])
    return ["otlp"] if endpoint else []


def otlp_over_grpc(signal: Signal) -> bool:
    variable = _PROTOCOL_VAR[signal] if os.environ.get(_PROTOCOL_VAR[signal]) else OTEL_EXPORTER_OTLP_PROTOCOL
    protocol = (os.environ.get(variable) or "http/protobuf").strip().lower()
    if protocol not in ("http/protobuf", "http", "grpc"):
        raise ConfigError(f"{variable}={protocol!r} is not one of http/protobuf, grpc")
    return protocol == "grpc"


_NO_GRPC = ("OTLP over gRPC needs opentelemetry-exporter-otlp-proto-grpc; "
            "OTLP over HTTP (the default) is installed")


def otlp_span_exporter() -> SpanExporter:
    """The OTLP span exporter the protocol asks for (it reads its endpoint and headers itself)."""
    if otlp_over_grpc("traces"):
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter as GrpcSpanExporter,
            )
        except ImportError:
            raise ConfigError(_NO_GRPC) from None
        exporter: SpanExporter = GrpcSpanExporter()
        return exporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def otlp_metric_exporter() -> MetricExporter:
    """The OTLP metric exporter the protocol asks for (it reads its endpoint and headers itself)."""
    if otlp_over_grpc("metrics"):
        try:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPMetricExporter as GrpcMetricExporter,
            )
        except ImportError:
            raise ConfigError(_NO_GRPC) from None
        exporter: MetricExporter = GrpcMetricExporter()
        return exporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter()


def resource(service: str) -> Resource:
    """The service's resource: its name and a ``service.instance.id`` that stays the same when
    the process restarts in place (the host name: a container's or pod's), so a restart loop
    shows as the changes of one series, not as new series. OTEL_SERVICE_NAME and
    OTEL_RESOURCE_ATTRIBUTES, as the SDK's detector reads them, override both."""
    ours = Resource.create({SERVICE_NAME: service, SERVICE_INSTANCE_ID: socket.gethostname()})
    return ours.merge(OTELResourceDetector().detect())
