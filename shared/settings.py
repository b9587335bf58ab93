"""Run-time settings, read once from the environment (twelve-factor; compose sets these)."""

from __future__ import annotations

import os
from typing import Annotated

import msgspec

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    nats_url: str = DEFAULT_NATS_URL
    nats_user: str | None = None
    nats_password: str | None = None
    nats_creds: str | None = None  # path to a credentials file
    nats_tls_ca: str | None = None
    data_dir: str = "var"
    #: CSP North `timestamp` is when the alert *left* CSP North; subtract this to estimate arrival.
    csp_north_offset_ms: int = 0
    dcc_rules: str | None = None
    #: The CSP power-outage notification's shape (TOML; None: the packaged, illustrative one).
    csp_notifications: str | None = None
    metrics_partitions: int = 1
    metrics_partition: int | None = None  # None: this replica owns every partition
    batch_size: int = 512
    batch_timeout_s: float = 0.02
    publish_ack_timeout_s: float = 10.0
    drain_timeout_s: float = 20.0
    max_message_bytes: int = 256 * 1024
    max_payload_b64_chars: int = 64 * 1024
    max_json_depth: int = 8
    allowed_lateness_s: float = 300.0
    handshake_timeout_s: float = 300.0
    idle_close_after_s: float = 30.0
    stream_replicas: int = 1
    stream_max_age_s: float = 7 * 86_400.0
    #: All streams together (split by shared.bus.stream_max_bytes): 7 days at the national
    #: average plus a storm hour at 50x, with a third to spare (docs/scaling.md).
    stream_max_bytes: int = 3 * 1024**4
    #: Write the trace index (ast.index.<key>, see docs/reliability.md): `alert-timing trace`
    #: reads by sequence instead of scanning the log.
    trace_index: bool = True
    duplicate_window_s: float = 120.0
    #: How often the metrics service snapshots its state (0: never; it then replays the whole log).
    snapshot_interval_s: float = 60.0
    #: Where each closed window's files go for DS&A: sftp://USER@HOST:PORT/PATH (the File Gateway)
    #: or file:///PATH; unset: the files stay in the data directory only.
    delivery_url: str | None = None
    delivery_key: str | None = None  # private key file for SFTP
    delivery_known_hosts: str | None = None  # known_hosts file: the gateway's host key is checked
    delivery_retry_max_s: float = 300.0  # backoff ceiling while the landing zone fails
    delivery_horizon_days: int = 8  # local window files older than this are not looked at again
    #: The log level of every command and service (DEBUG, INFO, WARNING, ERROR).
    log_level: Annotated[str, msgspec.Meta(pattern="^(?i:debug|info|warning|error|critical)$")] = "INFO"
    #: Share of complete records whose alert-journey trace is exported (besides every outlier).
    journey_sample_ratio: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.01
    #: End to end at or over this (ms): the record's journey trace is always exported.
    journey_outlier_ms: Annotated[int, msgspec.Meta(ge=0)] = 10_000
    #: The targets file of the operational metrics (`alert-timing report`; None: the packaged one).
    targets: str | None = None
    #: Serve the OpenTelemetry metrics for a Prometheus scrape on 127.0.0.1:<port>/metrics
    #: (local runs; compose scrapes the collector).
    prometheus_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None


#: The variable that sets each field: NATS_* for the connection, ALERT_TIMING_<FIELD> for the
#: rest. Generated from ``Settings``, so a field cannot lack its variable nor a variable its
#: field (compose and the docs are checked against this list).
ENV_VARS: dict[str, str] = {
    (name.upper() if name.startswith("nats_") else f"ALERT_TIMING_{name.upper()}"): name
    for name in Settings.__struct_fields__
}
FIELD_VARS: dict[str, str] = {name: env for env, name in ENV_VARS.items()}


class ConfigError(ValueError):
    """A setting that cannot be used (the message names the variable and says why): the
    command line and ``python -m services.<name>`` print it as one line, exit status 2."""


def load(**overrides: object) -> Settings:
    """Settings from the environment, then explicit overrides (CLI flags) on top."""
    values: dict[str, object] = {}
    for env, field in ENV_VARS.items():
        if env in os.environ and os.environ[env] != "":
            values[field] = os.environ[env]
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc, values)) from None


def _explain(exc: msgspec.ValidationError, values: dict[str, object]) -> str:
    """msgspec's ``Expected `int`, got `str` - at `$.batch_size``` said by the variable and its value."""
    message, _, where = str(exc).rpartition(" - at `$.")
    field = where.rstrip("`")
    if not message or field not in FIELD_VARS:
        return f"bad setting: {exc}"
    return f"{FIELD_VARS[field]}={values.get(field)!r}: {message[0].lower()}{message[1:]}"
