"""deploy/nats on a real nats-server: one user per service, each allowed exactly what it
does on NATS (and refused the rest), a read-only ops user, no anonymous access, TLS.

The server runs the committed configuration unchanged: passwords and the store
directory come from the environment, only the listen address and ports are given on
the command line (free loopback ports).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.errors
import pytest
import pytest_asyncio
from nats.js import api

from alert_timing.nats_server import free_port, nats_server_binary
from alert_timing.simulator.run import metrics_latest_inputs
from services.runtime.deadletter import DeadLetters, advisory_subject
from shared import bus
from shared import subjects as s
from shared.eventlog import read_messages
from shared.settings import Settings

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
NATS_DIR = REPO / "deploy" / "nats"
CONFIG = NATS_DIR / "nats-server.conf"
TLS_CONFIG = NATS_DIR / "tls.conf"

USERS = (s.HUB_CAPTURE, s.CSP_ENRICHMENT, s.DSP_MAPPING, s.METRICS, "bootstrap", "simulator", "ops")


def password_var(user: str) -> str:
    return user.upper().replace("-", "_") + "_NATS_PASSWORD"


# --------------------------------------------------------------------------- server


@dataclass
class SecuredNats:
    process: subprocess.Popen
    port: int
    http_port: int
    passwords: dict[str, str]
    log: Path
    scheme: str = "nats"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def settings(self, user: str, **extra: object) -> Settings:
        return Settings(nats_url=self.url, nats_user=user, nats_password=self.passwords[user], **extra)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def server_env(tmp: Path, passwords: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NATS_PASSWORD")}
    env.update({password_var(u): p for u, p in passwords.items()})
    env["NATS_STORE_DIR"] = str(tmp / "store")
    env.update(extra)
    return env


def new_passwords() -> dict[str, str]:
    # A letter first: nats-server parses an environment value as a config value, and an
    # all-digit or boolean-looking one would not be a string (see deploy/nats/README.md).
    return {u: "p" + secrets.token_hex(16) for u in USERS}


def start_server(config: Path, tmp: Path, *, scheme: str = "nats", **extra_env: str) -> SecuredNats:
    tmp.mkdir(parents=True, exist_ok=True)
    passwords = new_passwords()
    port, http_port = free_port(), free_port()
    log = tmp / "nats-server.log"
    process = subprocess.Popen(
        [nats_server_binary(), "-c", str(config), "-a", "127.0.0.1", "-p", str(port),
         "-m", str(http_port), "-l", str(log)],
        env=server_env(tmp, passwords, **extra_env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    server = SecuredNats(process, port, http_port, passwords, log, scheme)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"nats-server exited with {process.returncode}: {err}{server.log_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"nats-server not healthy within 15 s:\n{server.log_text()}")


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredNats]:
    server = start_server(CONFIG, tmp_path_factory.mktemp("secured-nats"))
    try:
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture(scope="module")
async def bootstrapped(secured: SecuredNats) -> SecuredNats:
    """Streams and durables made by the bootstrap user, as `alert-timing bootstrap` does."""
    nc = await bus.connect(secured.settings("bootstrap"), "bootstrap")
    try:
        done = await bus.bootstrap(nc.jetstream(), secured.settings("bootstrap"))
    finally:
        await nc.close()
    assert any("created" in line for line in done)
    return secured


# --------------------------------------------------------------------------- clients


@dataclass
class Conn:
    nc: nats.aio.client.Client
    errors: list[str] = field(default_factory=list)

    @property
    def js(self):  # type: ignore[no-untyped-def]
        return self.nc.jetstream(timeout=5)

    def violations(self) -> list[str]:
        return [e for e in self.errors if "permissions violation" in e.lower()]

    async def refused(self, *, publish: Sequence[str] = (), subscribe: Sequence[str] = ()) -> list[str]:
        """Try each publish/subscribe; return those the server did NOT refuse."""
        start = len(self.errors)
        for subject in publish:
            await self.nc.publish(subject, b"{}", reply=self.nc.new_inbox())
        subs = [await self.nc.subscribe(subject) for subject in subscribe]
        await self.nc.flush(timeout=5)
        deadline = time.monotonic() + 2
        want = len(publish) + len(subscribe)
        # The refusals arrive through nats-py's error callback, which appends to self.errors.
        while len(self.errors) - start < want and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        seen = " ".join(self.errors[start:]).lower()
        for sub in subs:
            await sub.unsubscribe()
        missed = [f"publish {x}" for x in publish if f'publish to "{x.lower()}"' not in seen]
        missed += [f"subscribe {x}" for x in subscribe if f'subscription to "{x.lower()}"' not in seen]
        return missed


@asynccontextmanager
async def connect_as(server: SecuredNats, user: str) -> AsyncIterator[Conn]:
    """Connect through ``shared.bus.connect`` (what every command and service uses)."""
    conn = Conn(nc=None)  # type: ignore[arg-type]

    async def on_error(exc: Exception) -> None:
        conn.errors.append(str(exc))

    conn.nc = await bus.connect(server.settings(user), f"test-{user}", error_cb=on_error)
    try:
        yield conn
    finally:
        await conn.nc.close()


async def take_one(js, stream: str, durable: str, marker: bytes) -> None:  # type: ignore[no-untyped-def]
    """Bind to a service's push durable as the service does (CONSUMER.INFO, then a queue
    subscription on its deliver subject, ``shared.bus.ConsumerSpec.deliver_subject``), take
    messages until the one carrying ``marker`` arrives, ack everything taken."""
    sub = await js.subscribe("", queue=durable, durable=durable, stream=stream, manual_ack=True)
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            try:
                m = await sub.next_msg(timeout=1)
            except nats.errors.TimeoutError:
                continue
            await m.ack()
            if marker in m.data:
                return
        raise AssertionError(f"{stream}/{durable} did not deliver the test message")
    finally:
        await sub.unsubscribe()


async def stream_count(server: SecuredNats, stream: str, subject: str) -> int:
    async with connect_as(server, "bootstrap") as admin:
        info = await admin.js.stream_info(stream, subjects_filter=subject)
        return (info.state.subjects or {}).get(subject, 0)


# --------------------------------------------------------------------------- what each service does

#: Every subject a product component publishes (the negative matrix is built from it).
PRODUCT_SUBJECTS = [
    *s.IN_CSP, s.IN_DSP_DELIVERY, s.IN_DSP_CLOCK,
    s.CAPTURED, s.ENRICHED, s.RESPONSE_SEEN, s.DELIVER, s.expected(0), s.attempted(0), s.CLOCK,
    s.wall_clock(0), s.RECORD, s.REPORT_15M,
    *(s.rejected(x) for x in s.SERVICES), *(s.dead_letter(x) for x in s.SERVICES),
]


@dataclass(frozen=True)
class Case:
    user: str            # the service's NATS user
    stream: str
    durable: str
    feeder: str          # who publishes the service's input
    input: str
    outputs: tuple[str, ...]


CASES = [
    Case(s.HUB_CAPTURE, s.STREAM_IN, "hub-capture", "simulator", s.IN_CSP_NORTH,
         (s.CAPTURED, s.rejected(s.HUB_CAPTURE))),
    Case(s.CSP_ENRICHMENT, s.STREAM_EVENTS, "csp-enrichment", s.HUB_CAPTURE, s.CAPTURED,
         (s.ENRICHED, s.RESPONSE_SEEN, s.rejected(s.CSP_ENRICHMENT))),
    Case(s.DSP_MAPPING, s.STREAM_EVENTS, "dsp-mapping", s.CSP_ENRICHMENT, s.ENRICHED,
         (s.DELIVER, s.expected(0), s.attempted(0), s.CLOCK, s.rejected(s.DSP_MAPPING))),
    Case(s.DSP_MAPPING, s.STREAM_IN, "dsp-mapping-delivery", "simulator", s.IN_DSP_DELIVERY, ()),
    Case(s.METRICS, s.STREAM_EVENTS, bus.metrics_durable(0), s.DSP_MAPPING, s.expected(0),
         (s.RECORD, s.REPORT_15M, s.rejected(s.METRICS), s.wall_clock(0))),
]

OWN_OUTPUTS = {
    user: {o for c in CASES if c.user == user for o in c.outputs} for user in s.SERVICES
}
# Dead letters (services/deadletter.py): each service copies the messages its own durables
# gave up on to its own ast.dead-letter.<stage>, and to no one else's.
for _user in s.SERVICES:
    OWN_OUTPUTS[_user].add(s.dead_letter(_user))


def test_cases_cover_every_durable_consumer() -> None:
    specs = {(c.stream, c.durable, c.service) for c in bus.consumer_specs(1)}
    assert {(c.stream, c.durable, c.user) for c in CASES} == specs


def test_config_needs_every_password(tmp_path: Path) -> None:
    passwords = new_passwords()
    ok = subprocess.run([nats_server_binary(), "-t", "-c", str(CONFIG)], capture_output=True, text=True,
                        env=server_env(tmp_path, passwords))
    assert ok.returncode == 0, ok.stderr + ok.stdout
    env = server_env(tmp_path, passwords)
    del env["OPS_NATS_PASSWORD"]
    missing = subprocess.run([nats_server_binary(), "-t", "-c", str(CONFIG)], capture_output=True,
                             text=True, env=env)
    assert missing.returncode != 0
    assert "OPS_NATS_PASSWORD" in missing.stderr + missing.stdout


async def test_server_limits_match_the_code(bootstrapped: SecuredNats) -> None:
    async with connect_as(bootstrapped, "ops") as ops:
        assert ops.nc.max_payload == bus.MAX_PAYLOAD


async def test_anonymous_and_wrong_password_are_refused(secured: SecuredNats) -> None:
    for kwargs in ({}, {"user": "hub-capture", "password": "wrong"}, {"user": "nobody", "password": "x"}):
        with pytest.raises(Exception) as info:
            await asyncio.wait_for(nats.connect(secured.url, allow_reconnect=False, max_reconnect_attempts=0,
                                                connect_timeout=2, **kwargs), 10)
        assert "authorization" in f"{type(info.value).__name__} {info.value}".lower()
    assert secured.log_text().count("authentication error") >= 3


async def test_bootstrap_user_owns_streams_and_consumers(bootstrapped: SecuredNats) -> None:
    # A second run updates everything in place (what a redeploy does).
    nc = await bus.connect(bootstrapped.settings("bootstrap"), "bootstrap")
    try:
        done = await bus.bootstrap(nc.jetstream(), bootstrapped.settings("bootstrap"))
    finally:
        await nc.close()
    assert sum(1 for line in done if line.endswith("updated")) == len(s.STREAM_SUBJECTS) + 1  # + advisories
    async with connect_as(bootstrapped, "bootstrap") as admin:
        assert await admin.refused(publish=[*PRODUCT_SUBJECTS, "$JS.API.META.LEADER.STEPDOWN"],
                                   subscribe=["ast.>"]) == []


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.user}:{c.durable}")
async def test_service_user_does_its_job(bootstrapped: SecuredNats, case: Case) -> None:
    marker = secrets.token_hex(8).encode()
    async with connect_as(bootstrapped, case.feeder) as feeder:
        ack = await feeder.js.publish(case.input, b'{"test":"' + marker + b'"}',
                                      headers={"Nats-Msg-Id": f"in:{marker.decode()}"})
        assert ack.stream == case.stream
    async with connect_as(bootstrapped, case.user) as service:
        await take_one(service.js, case.stream, case.durable, marker)
        for subject in case.outputs:
            ack = await service.js.publish(subject, b'{"test":"' + marker + b'"}',
                                           headers={"Nats-Msg-Id": f"{subject}:{marker.decode()}"})
            assert ack.stream in (s.STREAM_EVENTS, s.STREAM_OUT)
        assert service.violations() == []


async def test_metrics_user_can_rebuild_its_state(bootstrapped: SecuredNats) -> None:
    """The start-up replay: durable info, stream info, an ephemeral consumer on AST_EVENTS."""
    async with connect_as(bootstrapped, "dsp-mapping") as dsp:
        await dsp.js.publish(s.expected(0), b'{"replay":1}')
    async with connect_as(bootstrapped, s.METRICS) as metrics:
        info = await metrics.js.consumer_info(s.STREAM_EVENTS, bus.metrics_durable(0))
        try:
            got = [m async for batch in read_messages(metrics.nc, s.STREAM_EVENTS,
                                                      list(info.config.filter_subjects or []), 1)
                   for m in batch]
        except Exception as exc:  # noqa: BLE001 - a refused request surfaces as a timeout
            pytest.fail(f"the metrics user could not read AST_EVENTS ({exc!r}); refused: {metrics.violations()}")
        assert any(m.subject == s.expected(0) for m in got)
        assert metrics.violations() == []


async def test_metrics_user_writes_and_reads_its_snapshots(bootstrapped: SecuredNats) -> None:
    """The snapshots bucket (created by bootstrap): the metrics user writes a snapshot over the
    older one and reads the newest back; no other service may touch the bucket."""
    from services.metrics.core import MetricsConfig, MetricsCore
    from services.metrics.snapshot import Expected, SnapshotHeader, SnapshotStore, encode_snapshot

    config = MetricsConfig()
    filters = ["ast.expected.0"]
    async with connect_as(bootstrapped, s.METRICS) as metrics:
        store = SnapshotStore(metrics.js)
        for seq in (5, 9, 12):  # three writes: two slots, the oldest replaced
            header = SnapshotHeader(partition=0, stream=s.STREAM_EVENTS, filter_subjects=filters,
                                    consumer_created="c", stream_seq=seq, config=config, written_ms=0,
                                    body_sha256="", body_bytes=0)
            await store.save(encode_snapshot(MetricsCore(config).export_state(), header), header)
        loaded = await store.load(Expected(partition=0, stream=s.STREAM_EVENTS, filter_subjects=filters,
                                           consumer_created="c", config=config, delivered_seq=20))
        assert loaded is not None and loaded[0].stream_seq == 12, metrics.violations()
        assert metrics.violations() == []
    bucket = f"OBJ_{s.METRICS_SNAPSHOTS}"
    for user in (s.HUB_CAPTURE, s.CSP_ENRICHMENT, s.DSP_MAPPING):
        async with connect_as(bootstrapped, user) as conn:
            assert await conn.refused(publish=[
                f"$O.{s.METRICS_SNAPSHOTS}.C.x", f"$O.{s.METRICS_SNAPSHOTS}.M.x",
                f"$JS.API.STREAM.PURGE.{bucket}", f"$JS.API.STREAM.MSG.GET.{bucket}",
                f"$JS.API.CONSUMER.CREATE.{bucket}", s.wall_clock(0)]) == []


@pytest.mark.parametrize("user", s.SERVICES)
async def test_service_user_is_refused_everything_else(bootstrapped: SecuredNats, user: str) -> None:
    others = [c for c in CASES if c.user != user]
    not_owned = [x for x in PRODUCT_SUBJECTS if x not in OWN_OUTPUTS[user]]
    forbidden = [
        *not_owned,
        f"$JS.API.STREAM.DELETE.{s.STREAM_IN}",
        f"$JS.API.STREAM.PURGE.{s.STREAM_EVENTS}",
        f"$JS.API.STREAM.UPDATE.{s.STREAM_OUT}",
        # unnamed create: the server would take the name from the body and update any durable
        *(f"$JS.API.CONSUMER.CREATE.{stream}" for stream in s.STREAM_SUBJECTS),
        *(f"$JS.API.CONSUMER.DELETE.{c.stream}.{c.durable}" for c in CASES),
        *(f"$JS.API.CONSUMER.CREATE.{c.stream}.{c.durable}" for c in CASES),  # durables are bootstrap's
        *(f"$JS.API.CONSUMER.MSG.NEXT.{c.stream}.{c.durable}" for c in others),
        *(f"$JS.ACK.{c.stream}.{c.durable}.1.1.1.1.0" for c in others),
    ]
    async with connect_as(bootstrapped, user) as conn:
        assert await conn.refused(publish=forbidden, subscribe=["ast.>", ">"]) == []


@pytest.mark.parametrize("user", s.SERVICES)
async def test_service_user_can_dead_letter_its_own_messages(bootstrapped: SecuredNats, user: str) -> None:
    """What services.runtime.deadletter does, under the service's own user: listen to the
    max-deliveries advisories of its own durables, read the named message back from its
    stream by sequence, publish the copy to its own ast.dead-letter.<stage>. The advisories
    of other services' durables and their dead-letter subjects are refused."""
    own = [(c.stream, c.durable) for c in CASES if c.user == user]
    others = [(c.stream, c.durable) for c in CASES if c.user != user]
    marker = secrets.token_hex(8).encode()
    stream = own[0][0]
    feeder = next(c.feeder for c in CASES if c.user == user and c.stream == stream)
    subject = next(c.input for c in CASES if c.user == user and c.stream == stream)
    async with connect_as(bootstrapped, feeder) as feed:
        ack = await feed.js.publish(subject, b'{"dead":"' + marker + b'"}',
                                    headers={"Nats-Msg-Id": f"dead-test:{marker.decode()}"})
    before = await stream_count(bootstrapped, s.STREAM_EVENTS, s.dead_letter(user))
    async with connect_as(bootstrapped, user) as conn:
        watcher = DeadLetters(user, own, timeout=5)
        # its durable on the stored advisories (AST_ADVISORIES), as the copier binds and pulls it
        sub = await conn.js.pull_subscribe_bind(bus.deadletter_durable(user), s.STREAM_ADVISORIES)
        with pytest.raises(nats.errors.TimeoutError):
            await sub.fetch(1, timeout=0.5)
        await sub.unsubscribe()
        await watcher.start(conn.nc)
        event = await watcher.copy(ack.stream, own[0][1], ack.seq, deliveries=5)
        await watcher.stop()
        assert event.raw == b'{"dead":"' + marker + b'"}' and event.subject == subject
        assert conn.violations() == []
        assert await conn.refused(
            publish=[s.dead_letter(x) for x in s.SERVICES if x != user]
            + [f"$JS.API.STREAM.MSG.GET.{x}" for x in s.STREAM_SUBJECTS
               if x not in {st for st, _ in own} | {s.STREAM_IN if user == s.CSP_ENRICHMENT else ""}]
            + [f"$JS.API.CONSUMER.MSG.NEXT.{s.STREAM_ADVISORIES}.{bus.deadletter_durable(x)}"
               for x in s.SERVICES if x != user],
            subscribe=[advisory_subject(st, d) for st, d in others]
            + ["$JS.EVENT.ADVISORY.>", "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>"]) == []
    assert await stream_count(bootstrapped, s.STREAM_EVENTS, s.dead_letter(user)) == before + 1


@pytest.mark.parametrize("user", USERS)
async def test_no_user_can_read_another_users_replies(bootstrapped: SecuredNats, user: str) -> None:
    """Each connection's replies come to _INBOX.<user>. (shared.bus.inbox_prefix); the server
    refuses a subscription to any other inbox, or to all of them."""
    async with connect_as(bootstrapped, user) as conn:
        assert conn.nc.new_inbox().startswith(f"_INBOX.{user}.")
        await conn.js.account_info() if user in ("bootstrap", "ops") else await conn.nc.flush()
        own = await conn.nc.subscribe(f"_INBOX.{user}.x")
        await conn.nc.flush(timeout=5)
        await own.unsubscribe()
        assert conn.violations() == []
        others = [f"_INBOX.{x}.>" for x in USERS if x != user]
        assert await conn.refused(subscribe=["_INBOX.>", "_INBOX.*", *others]) == []


async def test_hub_capture_cannot_publish_a_record(bootstrapped: SecuredNats) -> None:
    before = await stream_count(bootstrapped, s.STREAM_OUT, s.RECORD)
    async with connect_as(bootstrapped, s.HUB_CAPTURE) as hub:
        with pytest.raises(nats.errors.TimeoutError):  # dropped by the server: no JetStream ack
            await hub.js.publish(s.RECORD, b'{"forged":true}', timeout=1)
        assert any(f'publish to "{s.RECORD}"' in v.lower() for v in hub.violations())
    assert await stream_count(bootstrapped, s.STREAM_OUT, s.RECORD) == before


async def test_simulator_feeds_inputs_and_reads_outputs_only(bootstrapped: SecuredNats) -> None:
    async with connect_as(bootstrapped, "simulator") as sim:
        for subject in [*s.IN_CSP, s.IN_DSP_DELIVERY, s.IN_DSP_CLOCK]:
            assert (await sim.js.publish(subject, b"{}")).stream == s.STREAM_IN
        # the follow-the-outputs pattern of services/simulator/run.py
        for stream, subjects in ((s.STREAM_EVENTS, [s.DELIVER]), (s.STREAM_OUT, [s.RECORD, s.REPORT_15M])):
            await sim.js.stream_info(stream)
            sub = await sim.js.pull_subscribe("", stream=stream, config=api.ConsumerConfig(
                ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.ALL,
                filter_subjects=subjects, inactive_threshold=10.0, mem_storage=True),
                inbox_prefix=bus.reply_prefix(sim.nc))
            # allowed, or a violation below; an empty stream only times out (which earlier tests
            # of this module have filled it is not this test's business)
            with contextlib.suppress(nats.errors.TimeoutError):
                await sub.fetch(10, timeout=2)
            await sub.unsubscribe()
        # the SIT scenario's look at the pipeline's event time (run.metrics_latest_inputs)
        await metrics_latest_inputs(sim.js, 1)
        assert sim.violations() == []
        outputs = [x for x in PRODUCT_SUBJECTS if not x.startswith("ast.in.")]
        assert await sim.refused(
            publish=[
                *outputs,
                *(f"$JS.API.CONSUMER.MSG.NEXT.{c.stream}.{c.durable}" for c in CASES),
                *(f"$JS.API.CONSUMER.CREATE.{c.stream}.{c.durable}" for c in CASES),
                f"$JS.API.CONSUMER.CREATE.{s.STREAM_IN}.peek",
                *(f"$JS.API.CONSUMER.CREATE.{stream}" for stream in s.STREAM_SUBJECTS),
                f"$JS.API.STREAM.DELETE.{s.STREAM_IN}",
            ],
            subscribe=["ast.>"],
        ) == []


async def test_ops_reads_everything_and_publishes_nothing(bootstrapped: SecuredNats) -> None:
    async with connect_as(bootstrapped, "ops") as ops:
        sub = await ops.nc.subscribe("ast.>")
        await ops.nc.flush()
        async with connect_as(bootstrapped, "simulator") as sim:
            await sim.js.publish(s.IN_CSP_SOUTH, b'{"seen-by":"ops"}')
        msg = await sub.next_msg(timeout=5)
        assert msg.subject == s.IN_CSP_SOUTH and msg.data == b'{"seen-by":"ops"}'
        await sub.unsubscribe()

        # Decision (deploy/nats/README.md): JetStream *information* requests are allowed,
        # so `alert-timing status` works as ops.
        await ops.js.account_info()
        assert (await ops.js.stream_info(s.STREAM_IN)).config.name == s.STREAM_IN
        assert (await ops.js.consumer_info(s.STREAM_IN, "hub-capture")).name == "hub-capture"
        assert {c.name for c in await ops.js.consumers_info(s.STREAM_EVENTS)} >= {"csp-enrichment"}
        assert ops.violations() == []

        assert await ops.refused(publish=[
            *PRODUCT_SUBJECTS,
            "anything",
            f"$JS.ACK.{s.STREAM_IN}.hub-capture.1.1.1.1.0",
            f"$JS.API.STREAM.CREATE.{s.STREAM_IN}",
            f"$JS.API.STREAM.DELETE.{s.STREAM_IN}",
            f"$JS.API.STREAM.PURGE.{s.STREAM_IN}",
            f"$JS.API.STREAM.MSG.DELETE.{s.STREAM_IN}",
            f"$JS.API.CONSUMER.CREATE.{s.STREAM_EVENTS}.peek",  # a consumer is a write (README)
            f"$JS.API.CONSUMER.CREATE.{s.STREAM_EVENTS}",
            f"$JS.API.CONSUMER.MSG.NEXT.{s.STREAM_IN}.hub-capture",
            f"$JS.API.CONSUMER.DELETE.{s.STREAM_IN}.hub-capture",
        ]) == []


def cli_env(server: SecuredNats, user: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "ALERT_TIMING_", "OTEL_"))}
    env.update(NATS_URL=server.url, NATS_USER=user, NATS_PASSWORD=server.passwords[user], **extra)
    return env


async def test_ops_commands_run_as_ops(bootstrapped: SecuredNats) -> None:
    """`alert-timing status` and `alert-timing tail` work with the read-only user."""
    status = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alert_timing.cli", "status", "--json", env=cli_env(bootstrapped, "ops"), cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(status.communicate(), 60)
    assert status.returncode == 0, err.decode()
    report = json.loads(out)
    assert {c["durable"] for c in report["consumers"]} >= {"hub-capture", "csp-enrichment"}

    tail = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alert_timing.cli", "tail", f"{s.IN_DSP_CLOCK}", "--json", "--count", "1",
        env=cli_env(bootstrapped, "ops"), cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with connect_as(bootstrapped, "simulator") as sim:
            deadline = time.monotonic() + 30
            while tail.returncode is None and time.monotonic() < deadline:
                await sim.js.publish(s.IN_DSP_CLOCK, b'{"time":"20230601101500.000"}')
                try:
                    await asyncio.wait_for(tail.wait(), 0.5)
                except TimeoutError:
                    pass
        out, err = await asyncio.wait_for(tail.communicate(), 10)
    finally:
        if tail.returncode is None:
            tail.kill()
            await tail.wait()
    assert tail.returncode == 0, err.decode()
    assert b"20230601101500.000" in out
    refused = [ln for ln in bootstrapped.log_text().splitlines()
               if "Violation" in ln and ("alert-timing-status" in ln or "alert-timing-tail" in ln)]
    assert refused == []


# --------------------------------------------------------------------------- TLS


def self_signed(tmp: Path, name: str) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp / f"{name}.crt", tmp / f"{name}.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SecuredNats, Path, Path]]:
    tmp = tmp_path_factory.mktemp("tls-nats")
    cert, key = self_signed(tmp, "server")
    other, _ = self_signed(tmp, "other")
    server = start_server(TLS_CONFIG, tmp, scheme="tls", NATS_SERVER_TLS_CERT=str(cert),
                          NATS_SERVER_TLS_KEY=str(key))
    try:
        yield server, cert, other
    finally:
        server.stop()


async def test_tls_clients_connect_with_the_ca(tls_server: tuple[SecuredNats, Path, Path]) -> None:
    server, cert, _ = tls_server
    settings = server.settings("bootstrap", nats_tls_ca=str(cert))
    nc = await asyncio.wait_for(bus.connect(settings, "bootstrap"), 10)
    try:
        assert nc.connected_url.scheme == "tls"
        done = await bus.bootstrap(nc.jetstream(), settings)
        assert f"stream {s.STREAM_IN} created" in done
    finally:
        await nc.close()


def test_tls_server_refuses_plain_text(tls_server: tuple[SecuredNats, Path, Path]) -> None:
    """A client that speaks plain text (right password) gets no answer: the connection closes."""
    server, _, _ = tls_server
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        info = sock.recv(65536)
        assert info.startswith(b"INFO ")
        assert json.loads(info[5:].split(b"\r\n")[0])["tls_required"] is True
        password = server.passwords["ops"].encode()
        sock.sendall(b'CONNECT {"user":"ops","pass":"' + password + b'","verbose":false}\r\nPING\r\n')
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError:
            pass
    assert b"PONG" not in received


async def test_tls_client_refuses_an_unknown_certificate(tls_server: tuple[SecuredNats, Path, Path]) -> None:
    server, _, other = tls_server
    for tls in (None, ssl.create_default_context(cafile=str(other))):  # system CAs, or the wrong CA
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.wait_for(nats.connect(server.url, user="ops", password=server.passwords["ops"],
                                                tls=tls, allow_reconnect=False, max_reconnect_attempts=0,
                                                connect_timeout=2), 10)


# --------------------------------------------------------------------------- the real services


def test_real_services_and_simulator_under_their_own_users(tmp_path: Path) -> None:
    """The four services (`alert-timing service NAME`) and `alert-timing simulate`, each with
    its own user, against the committed configuration: every alert comes out, a restarted
    metrics service rebuilds its state, and the server logs no permission violation."""
    server = start_server(CONFIG, tmp_path / "nats")
    procs: list[subprocess.Popen] = []
    logs = tmp_path / "logs"
    logs.mkdir()

    def env(user: str) -> dict[str, str]:
        e = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "ALERT_TIMING_", "OTEL_"))}
        e.update(NATS_URL=server.url, NATS_USER=user, NATS_PASSWORD=server.passwords[user],
                 ALERT_TIMING_DATA_DIR=str(tmp_path / "data"), ALERT_TIMING_LOG_LEVEL="WARNING")
        return e

    def cli(*args: str) -> list[str]:
        return [sys.executable, "-m", "alert_timing.cli", *args]

    try:
        boot = subprocess.run(cli("bootstrap"), env=env("bootstrap"), cwd=REPO, capture_output=True,
                              text=True, timeout=60)
        assert boot.returncode == 0, boot.stderr
        for name in s.SERVICES:
            with open(logs / f"{name}.log", "wb") as out:
                procs.append(subprocess.Popen(cli("service", name), env=env(name) | {"ALERT_TIMING_LOG_LEVEL": "INFO"},
                                              cwd=REPO, stdout=out, stderr=subprocess.STDOUT))

        def dead() -> dict[str, int]:
            return {p.args[-1]: p.returncode for p in procs if p.poll() is not None}

        def service_logs() -> dict[str, str]:
            return {f.name: f.read_text(errors="replace")[-2000:] for f in logs.iterdir()}

        def started() -> bool:
            return all('"service started"' in (logs / f"{name}.log").read_text(errors="replace")
                       for name in s.SERVICES)

        # each service up (connected and consuming under its user), or one refused and gone
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not dead() and not started():
            time.sleep(0.1)
        assert started() and not dead(), (dead(), service_logs())
        with open(tmp_path / "simulate.out", "wb") as out:
            sim = subprocess.Popen(cli("simulate", "--alerts", "200", "--wait", "60"), env=env("simulator"),
                                   cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
            while sim.poll() is None and not dead():
                time.sleep(0.2)
            if sim.poll() is None:
                sim.kill()
            sim.wait(30)
        summary = (tmp_path / "simulate.out").read_text(errors="replace")[-3000:]
        assert sim.returncode == 0 and not dead(), (summary, dead(), service_logs())

        # A restarted metrics service rebuilds its state from the event log under its user.
        metrics = procs.pop()
        metrics.terminate()
        metrics.wait(30)
        restart_log = logs / "metrics-restart.log"
        with open(restart_log, "wb") as out:
            procs.append(subprocess.Popen(cli("service", s.METRICS), env=env(s.METRICS) | {
                "ALERT_TIMING_LOG_LEVEL": "INFO"}, cwd=REPO, stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not dead():
            if "metrics state rebuilt" in restart_log.read_text(errors="replace"):
                break
            time.sleep(0.2)
        assert "metrics state rebuilt" in restart_log.read_text(errors="replace"), (dead(), service_logs())
        violations = [ln for ln in server.log_text().splitlines() if "Violation" in ln]
        assert violations == []
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        server.stop()
