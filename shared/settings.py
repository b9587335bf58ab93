"""Run-time settings, read once from the environment (twelve-factor; compose sets these)."""

from __future__ import annotations

import os

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
    #: Write the trace index (ast.index.<key>, see README "Reliability"): `alert-timing trace`
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


#: Environment variables the code reads (compose and the docs are checked against this list).
ENV_VARS = {
    "NATS_URL": "nats_url",
    "NATS_USER": "nats_user",
    "NATS_PASSWORD": "nats_password",
    "NATS_CREDS": "nats_creds",
    "NATS_TLS_CA": "nats_tls_ca",
    "ALERT_TIMING_DATA_DIR": "data_dir",
    "ALERT_TIMING_CSP_NORTH_OFFSET_MS": "csp_north_offset_ms",
    "ALERT_TIMING_DCC_RULES": "dcc_rules",
    "ALERT_TIMING_CSP_NOTIFICATIONS": "csp_notifications",
    "ALERT_TIMING_METRICS_PARTITIONS": "metrics_partitions",
    "ALERT_TIMING_METRICS_PARTITION": "metrics_partition",
    "ALERT_TIMING_BATCH_SIZE": "batch_size",
    "ALERT_TIMING_BATCH_TIMEOUT_S": "batch_timeout_s",
    "ALERT_TIMING_PUBLISH_ACK_TIMEOUT_S": "publish_ack_timeout_s",
    "ALERT_TIMING_DRAIN_TIMEOUT_S": "drain_timeout_s",
    "ALERT_TIMING_MAX_MESSAGE_BYTES": "max_message_bytes",
    "ALERT_TIMING_MAX_PAYLOAD_B64_CHARS": "max_payload_b64_chars",
    "ALERT_TIMING_ALLOWED_LATENESS_S": "allowed_lateness_s",
    "ALERT_TIMING_HANDSHAKE_TIMEOUT_S": "handshake_timeout_s",
    "ALERT_TIMING_IDLE_CLOSE_AFTER_S": "idle_close_after_s",
    "ALERT_TIMING_STREAM_REPLICAS": "stream_replicas",
    "ALERT_TIMING_STREAM_MAX_AGE_S": "stream_max_age_s",
    "ALERT_TIMING_SNAPSHOT_INTERVAL_S": "snapshot_interval_s",
    "ALERT_TIMING_STREAM_MAX_BYTES": "stream_max_bytes",
    "ALERT_TIMING_TRACE_INDEX": "trace_index",
    "ALERT_TIMING_DELIVERY_URL": "delivery_url",
    "ALERT_TIMING_DELIVERY_KEY": "delivery_key",
    "ALERT_TIMING_DELIVERY_KNOWN_HOSTS": "delivery_known_hosts",
    "ALERT_TIMING_DELIVERY_RETRY_MAX_S": "delivery_retry_max_s",
    "ALERT_TIMING_DELIVERY_HORIZON_DAYS": "delivery_horizon_days",
    # Read by shared/telemetry.py (no Settings field): the alert-journey trace's sampling.
    "ALERT_TIMING_JOURNEY_SAMPLE_RATIO": "journey_sample_ratio",
    "ALERT_TIMING_JOURNEY_OUTLIER_MS": "journey_outlier_ms",
    # Read by `alert-timing report` (no Settings field): the targets file of the operational metrics.
    "ALERT_TIMING_TARGETS": "targets",
    # Read by shared/telemetry.py (no Settings field): serve the OpenTelemetry metrics for a
    # Prometheus scrape on 127.0.0.1:<port>/metrics (local runs; compose scrapes the collector).
    "ALERT_TIMING_PROMETHEUS_PORT": "prometheus_port",
}


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
        raise SystemExit(f"alert-timing: bad setting: {exc}") from None
