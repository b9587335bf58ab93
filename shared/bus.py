"""NATS plumbing: connect, own the streams and consumers, publish with pipelined acks,
and run an embedded ``nats-server`` for laptops and tests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nats
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, BucketNotFoundError, NotFoundError

from shared import subjects as s
from shared.settings import Settings

log = structlog.get_logger()

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
        kwargs["inbox_prefix"] = inbox_prefix(settings)
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


def inbox_prefix(settings: Settings) -> str:
    """Replies to a user's requests come to ``_INBOX.<user>.…``; the server lets each user
    subscribe to its own prefix only (deploy/nats/nats-server.conf), so no client can read the
    replies meant for another."""
    return f"_INBOX.{settings.nats_user}" if settings.nats_user else "_INBOX"


def reply_prefix(nc: Client) -> bytes:
    """The connection's inbox prefix with its dot, for nats-py's ``pull_subscribe``, which
    otherwise subscribes under the shared ``_INBOX.`` whatever the connection's prefix."""
    return nc.new_inbox().rsplit(".", 1)[0].encode() + b"."


# --------------------------------------------------------------------------- bootstrap


#: Unacked messages a durable fed one input per message (``ast.in.*``) may have out at once:
#: the flow control of its push delivery (JetStream offers no other with a deliver group, see
#: ``consumer_config``). Four batches of 512: one in hand, the next gathering, two on the way;
#: the last of them waits at most 2,048 inputs' work (a second or two at the slowest stage's
#: rate), far inside ``ack_wait_s``.
INPUT_MAX_ACK_PENDING = 2_048
#: The same for a durable fed envelopes (``ast.captured`` …, up to 256 events each,
#: services.runtime.service.ENVELOPE_MAX_EVENTS): 128 envelopes, at most 32,768 events, a few
#: seconds' work for a stage taking several thousand events a second, inside ``ack_wait_s``.
ENVELOPE_MAX_ACK_PENDING = 128


@dataclass(frozen=True)
class ConsumerSpec:
    stream: str
    durable: str
    filter_subjects: tuple[str, ...]
    service: str
    max_ack_pending: int = INPUT_MAX_ACK_PENDING
    ack_wait_s: float = 30.0
    max_deliver: int = 5
    #: Pushed to the service (``deliver_subject``) rather than pulled.
    push: bool = True

    @property
    def deliver_subject(self) -> str:
        """Where JetStream pushes this durable's messages: under the service's own inbox
        (``_INBOX.<service>.>``, the only subjects its user may subscribe to, and nobody
        else's), never a subject a stream stores or another user reads."""
        return f"_INBOX.{self.service}.push.{self.durable}"


def consumer_specs(partitions: int = 1) -> list[ConsumerSpec]:
    """Every durable consumer of the product: one per service input (replicas share it)."""
    envelopes = ENVELOPE_MAX_ACK_PENDING
    specs = [
        ConsumerSpec(s.STREAM_IN, "hub-capture", tuple(s.IN_CSP), s.HUB_CAPTURE),
        ConsumerSpec(s.STREAM_EVENTS, "csp-enrichment", (s.CAPTURED,), s.CSP_ENRICHMENT, envelopes),
        ConsumerSpec(s.STREAM_EVENTS, "dsp-mapping", (s.ENRICHED,), s.DSP_MAPPING, envelopes),
        ConsumerSpec(
            s.STREAM_IN, "dsp-mapping-delivery", (s.IN_DSP_DELIVERY, s.IN_DSP_CLOCK), s.DSP_MAPPING
        ),
    ]
    for p in range(partitions):
        subjects = [s.expected(p), s.attempted(p), s.CLOCK, s.wall_clock(p)]
        if p == 0:  # whole-network counts are kept by partition 0
            subjects += [s.RESPONSE_SEEN, f"{s.REJECTED}.*"]
        specs.append(ConsumerSpec(s.STREAM_EVENTS, metrics_durable(p), tuple(subjects), s.METRICS, envelopes))
    return specs


def consumer_config(spec: ConsumerSpec) -> api.ConsumerConfig:
    """A durable's JetStream config (the bootstrap's, the one place).

    A push durable delivers to ``spec.deliver_subject`` in a deliver group named after the
    durable, so the replicas of a service share it (each message goes to one of them). It has
    neither flow control nor idle heartbeats: the server accepts them with a deliver group, but
    both are per subscription while a group spreads the messages over several (nats.go and
    nats.c refuse such a queue subscription), so ``max_ack_pending`` is the flow control."""
    return api.ConsumerConfig(
        durable_name=spec.durable,
        name=spec.durable,
        ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.ALL,
        ack_wait=spec.ack_wait_s,
        max_deliver=spec.max_deliver,
        max_ack_pending=spec.max_ack_pending,
        filter_subjects=list(spec.filter_subjects),
        deliver_subject=spec.deliver_subject if spec.push else None,
        deliver_group=spec.durable if spec.push else None,
    )


#: JetStream's refusal to turn a pull consumer into a push one, or back, in place.
CONSUMER_MODE_CHANGE_ERR_CODE = 10012


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> str:
    """Create the durable, or update it to ``consumer_config``. A durable whose delivery mode
    changes (pull to push, as this release does, or back) cannot be updated in place: it is
    recreated from the first message it has not had acknowledged (its ack floor + 1), so what
    was acked stays acked, what was delivered and not acked comes again (at-least-once), and
    the metrics rebuild (ack floor) sees the same floor. The position an existing durable
    started from (deliver policy, start sequence) is never updated: JetStream refuses it."""
    config = consumer_config(spec)
    try:
        info = await js.consumer_info(spec.stream, spec.durable)
    except NotFoundError:
        await js.add_consumer(spec.stream, config)
        return f"consumer {spec.stream}/{spec.durable}"
    config.deliver_policy = info.config.deliver_policy
    config.opt_start_seq = info.config.opt_start_seq
    config.opt_start_time = info.config.opt_start_time
    if bool(info.config.deliver_subject) == spec.push:
        await js.add_consumer(spec.stream, config)
        return f"consumer {spec.stream}/{spec.durable}"
    floor = info.ack_floor.stream_seq if info.ack_floor is not None else 0
    config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
    config.opt_start_seq = floor + 1
    config.opt_start_time = None
    await js.delete_consumer(spec.stream, spec.durable)
    await js.add_consumer(spec.stream, config)
    mode = "push" if spec.push else "pull"
    log.warning("durable recreated to change its delivery mode", stream=spec.stream, durable=spec.durable,
                mode=mode, from_seq=floor + 1)
    return f"consumer {spec.stream}/{spec.durable} recreated for {mode} delivery from sequence {floor + 1}"


def deadletter_durable(service: str) -> str:
    return f"deadletter-{service}"


def deadletter_specs(partitions: int = 1) -> list[ConsumerSpec]:
    """One durable per service on the advisories stream, filtered to the max-deliveries
    advisories of that service's own durables (replicas share it; see
    services.runtime.deadletter). Each advisory is acked once its dead letter is stored."""
    by_service: dict[str, list[str]] = {}
    for spec in consumer_specs(partitions):
        by_service.setdefault(spec.service, []).append(
            f"{s.ADVISORY_MAX_DELIVERIES}.{spec.stream}.{spec.durable}")
    return [ConsumerSpec(s.STREAM_ADVISORIES, deadletter_durable(service), tuple(filters), service,
                         max_ack_pending=1000, max_deliver=-1, push=False)
            for service, filters in by_service.items()]


def consumer_spec(durable: str, partitions: int = 1) -> ConsumerSpec:
    """The spec of one of the product's durables (``consumer_specs``)."""
    for spec in consumer_specs(partitions):
        if spec.durable == durable:
            return spec
    raise KeyError(f"no durable consumer {durable!r} among the product's (partitions={partitions})")


def metrics_durable(partition: int) -> str:
    return f"metrics-{partition}"


#: Stored bytes per alert of each stream (docs/scaling.md, measured: state.bytes over a
#: 50,000-alert run, so subject, header and index overhead included). A stream's share of
#: ``Settings.stream_max_bytes`` is its share of these.
STREAM_BYTES_PER_ALERT: dict[str, int] = {
    s.STREAM_IN: 871,
    s.STREAM_EVENTS: 2140,
    s.STREAM_OUT: 1096,
    s.STREAM_INDEX: 999,  # measured by `alert-timing bench` (5.19 entries per alert)
}
#: Max-deliveries advisories are rare and small (~500 bytes): a fixed bound, not a share.
ADVISORIES_MAX_BYTES = 1024**3


def stream_max_bytes(settings: Settings) -> dict[str, int]:
    """Each stream's ``max_bytes``: the settings' total split in proportion to what an alert
    stores in it, so all streams reach their limit after about the same number of alerts."""
    total = sum(STREAM_BYTES_PER_ALERT.values())
    return {name: max(1024 * 1024, settings.stream_max_bytes * share // total)
            for name, share in STREAM_BYTES_PER_ALERT.items()}


#: Receipts are kept this much longer than the delivery horizon: the metrics host's clock (which
#: dates the window files) and the NATS servers' (which age the messages) may differ.
RECEIPT_MARGIN_S = 86_400.0


def receipts_max_age_s(settings: Settings) -> float:
    """``AST_OUT``'s ``max_age``: the streams' own, or longer when the delivery horizon needs it.
    The metrics service looks at a window file set for ``delivery_horizon_days`` after it wrote
    it (``services.metrics.delivery.local_file_sets``) and its receipt (``ast.delivered.<p>``) is
    stored after that, so a set it looks at always finds its receipt: never delivered twice."""
    return max(settings.stream_max_age_s, settings.delivery_horizon_days * 86_400.0 + RECEIPT_MARGIN_S)


def stream_configs(settings: Settings) -> list[api.StreamConfig]:
    """Every stream: limits retention (``max_age`` and ``max_bytes``), file storage.

    When a limit is reached the stream discards its *oldest* messages (``DiscardPolicy.OLD``):
    publishing never fails because the log is full, and the log keeps the newest history.
    A consumer that lags further behind than the limit loses the messages discarded before
    it read them (``alert-timing status`` shows each stream's first sequence and time).
    ``AST_OUT`` keeps the delivery receipts for the delivery horizon (``receipts_max_age_s``)."""
    limits = stream_max_bytes(settings)
    common: dict[str, Any] = {
        "retention": api.RetentionPolicy.LIMITS,
        "storage": api.StorageType.FILE,
        "num_replicas": settings.stream_replicas,
        "max_age": settings.stream_max_age_s,
        "duplicate_window": settings.duplicate_window_s,
        "discard": api.DiscardPolicy.OLD,
    }
    configs = [
        api.StreamConfig(
            name=name,
            subjects=list(subs),
            max_msg_size=MAX_INBOUND_BYTES if name == s.STREAM_IN else MAX_PAYLOAD,
            max_bytes=limits[name],
            allow_direct=True,  # trace reads by sequence (DIRECT.GET), from any replica
            allow_atomic=True,  # the services publish their outputs as atomic batches (shared.batching)
            **(common | ({"max_age": receipts_max_age_s(settings)} if name == s.STREAM_OUT else {})),
        )
        for name, subs in s.STREAM_SUBJECTS.items()
    ]
    configs.append(api.StreamConfig(
        name=s.STREAM_ADVISORIES,
        subjects=[f"{s.ADVISORY_MAX_DELIVERIES}.>"],
        max_bytes=ADVISORIES_MAX_BYTES,
        **common,
    ))
    return configs


#: The national average rate (docs/scaling.md, "Load"): what the streams' history is measured against.
NATIONAL_ALERTS_PER_S = 610
#: Smallest ``max_bytes`` the bootstrap gives a stream.
MIN_STREAM_BYTES = 1024 * 1024
#: When JetStream has less room than the settings ask, the streams reserve this share of it:
#: the rest is left to the snapshots' object store, which reserves nothing.
ROOM_SHARE = 0.9
#: A stream the bootstrap creates and deletes at once to learn how much storage JetStream will
#: still reserve (a client cannot read the server's store limit; the server answers a request).
STORAGE_PROBE = "AST_STORAGE_PROBE"
#: JetStream's answers to a reservation it cannot make: insufficient storage resources,
#: insufficient resources (clustered placement), stream max bytes above the account's limit.
NO_ROOM_ERR_CODES = frozenset({10047, 10023, 10122})


class StreamsDoNotFit(RuntimeError):
    """JetStream cannot reserve even the streams' smallest limits."""


def capped(wanted: Mapping[str, int], cap: int) -> dict[str, int]:
    """``wanted`` within the account's per-stream limit (``cap`` > 0; otherwise none)."""
    return {n: min(w, cap) if cap > 0 else w for n, w in wanted.items()}


def _reserved(current: Mapping[str, int], name: str) -> int:
    """What an existing stream reserves now (an unlimited or missing one: nothing)."""
    return max(0, current.get(name, 0))


def floors(wanted: Mapping[str, int], current: Mapping[str, int], cap: int = -1) -> dict[str, int]:
    """The least each stream is given: an existing stream keeps its limit (unless the settings
    ask for less), a new one gets MIN_STREAM_BYTES."""
    want = capped(wanted, cap)
    return {n: min(w, _reserved(current, n) or MIN_STREAM_BYTES) for n, w in want.items()}


def reservation_needed(sizes: Mapping[str, int], current: Mapping[str, int]) -> int:
    """Bytes JetStream must reserve on top of what the streams reserve now to give them ``sizes``
    (a stream that shrinks gives room back, counted for the others once it has shrunk)."""
    return sum(max(0, v - _reserved(current, n)) for n, v in sizes.items())


def fit_streams(wanted: Mapping[str, int], current: Mapping[str, int], room: int,
                cap: int = -1) -> dict[str, int] | None:
    """Each stream's ``max_bytes`` within what JetStream can still reserve.

    ``wanted``: what the settings ask per stream; ``current``: the existing streams' limits
    (-1: unlimited); ``room``: further bytes JetStream accepts to reserve; ``cap``: the
    account's per-stream limit (-1: none). All wanted when it fits; otherwise every stream
    scaled by one factor (so they still reach their limits after about the same number of
    alerts) within ``ROOM_SHARE`` of what the streams reserve and the room, never below its
    floor (``floors``: an existing stream is not shrunk); None when not even the floors fit."""
    want = capped(wanted, cap)
    if reservation_needed(want, current) <= room:
        return want
    low = floors(wanted, current, cap)
    least = reservation_needed(low, current)
    if least > room:
        return None
    # ROOM_SHARE of all the streams could have (what they reserve now and the room), so a
    # second bootstrap leaves them as the first sized them.
    ours = sum(_reserved(current, n) for n in want)
    budget = int((room + ours) * ROOM_SHARE) - ours
    if budget < least + MIN_STREAM_BYTES:  # within the room's precision (``storage_room``)
        budget = least

    def scaled(factor: float) -> dict[str, int]:
        return {n: max(low[n], min(w, int(w * factor))) for n, w in want.items()}

    fits, too_much = 0.0, 1.0
    for _ in range(60):
        middle = (fits + too_much) / 2
        if reservation_needed(scaled(middle), current) <= budget:
            fits = middle
        else:
            too_much = middle
    return scaled(fits)


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def history_held(sizes: Mapping[str, int], settings: Settings) -> str:
    """One sentence: how much history the sized streams hold against the national week."""
    streams = {n: v for n, v in sizes.items() if n in STREAM_BYTES_PER_ALERT}
    alerts = min(v / STREAM_BYTES_PER_ALERT[n] for n, v in streams.items())
    hours = alerts / NATIONAL_ALERTS_PER_S / 3600
    days = settings.stream_max_age_s / 86_400
    return (f"JetStream has less storage than ALERT_TIMING_STREAM_MAX_BYTES asks "
            f"({format_bytes(settings.stream_max_bytes)}): the streams are sized to "
            f"{format_bytes(sum(streams.values()))}, about {alerts:,.0f} alerts, {hours:.1f} h of national "
            f"traffic ({NATIONAL_ALERTS_PER_S} alerts/s), {hours / (days * 24):.1%} of the {days:g}-day "
            f"retention; older messages are discarded sooner (give the server more JetStream storage, "
            f"max_file_store, for more)")


#: JetStream's "error creating store for stream" (a store still going away, e.g. a probe's).
STORE_NOT_CREATED_ERR_CODE = 10049
_probe_serial = itertools.count()


async def _add_stream(js: JetStreamContext, config: api.StreamConfig) -> None:
    """``add_stream``, tried again briefly on "error creating store for stream": right after the
    storage probes' streams are deleted, the server can refuse a new store for a moment."""
    for attempt in range(5):
        try:
            await js.add_stream(config)
            return
        except APIError as exc:
            if exc.err_code != STORE_NOT_CREATED_ERR_CODE or attempt == 4:
                raise
            await asyncio.sleep(0.1 * (attempt + 1))


async def _probe(js: JetStreamContext, size: int, replicas: int, cap: int) -> bool:
    """Whether JetStream reserves ``size`` bytes now: probe streams created, then deleted (one
    per ``cap`` bytes, when the account limits each stream)."""
    count = 1 if cap <= 0 else -(-size // cap)
    made: list[str] = []
    try:
        for i in range(count):
            # A name of its own each time: a stream created again under the name of one just
            # deleted can meet its store still being removed ("error creating store for stream").
            name = f"{STORAGE_PROBE}_{next(_probe_serial)}"
            part = size // count + (1 if i < size % count else 0)
            config = api.StreamConfig(
                name=name, subjects=[f"{s.PREFIX}.storage-probe.{name.lower()}"], storage=api.StorageType.FILE,
                num_replicas=replicas, max_bytes=part, retention=api.RetentionPolicy.LIMITS)
            await _add_stream(js, config)
            made.append(name)
        return True
    except APIError as exc:
        if exc.err_code in NO_ROOM_ERR_CODES:
            return False
        raise
    finally:
        for name in made:
            await js.delete_stream(name)


async def _drop_probes(js: JetStreamContext) -> None:
    """Probe streams left by a bootstrap that stopped half way (they hold a reservation)."""
    offset = 0
    while page := await js.streams_info(offset):
        offset += len(page)
        for info in page:
            if info.config.name and info.config.name.startswith(STORAGE_PROBE):
                await js.delete_stream(info.config.name)


async def storage_room(js: JetStreamContext, need: int, replicas: int, cap: int = -1) -> int:
    """The most JetStream will reserve now for file streams of ``replicas``, up to ``need``
    (to MIN_STREAM_BYTES): asked of the server with probe streams, as neither the account's
    limits (-1: unlimited) nor anything else a client may read says what the server's store
    limit leaves (a stock server's is a share of the disk that was free when it started)."""
    await _drop_probes(js)
    if await _probe(js, need, replicas, cap):
        return need
    fits, too_much = 0, need
    while too_much - fits > MIN_STREAM_BYTES:
        middle = (fits + too_much) // 2
        if await _probe(js, middle, replicas, cap):
            fits = middle
        else:
            too_much = middle
    return fits


async def bootstrap(js: JetStreamContext, settings: Settings) -> list[str]:
    """Create or update every stream and durable consumer. The one place that owns their config.

    The streams' ``max_bytes`` are reserved against the server's (or the account's) JetStream
    storage: when it has less room than the settings ask (a stock ``nats-server -js`` offers a
    share of its free disk), the streams are sized within it and a warning says how much
    history that holds (``fit_streams``); when not even their smallest limits fit,
    ``StreamsDoNotFit`` says which setting to change."""
    done = []
    configs = stream_configs(settings)
    current: dict[str, int] = {}
    for config in configs:
        assert config.name is not None  # stream_configs names every stream
        with contextlib.suppress(NotFoundError):
            info = await js.stream_info(config.name)
            current[config.name] = info.config.max_bytes if info.config.max_bytes is not None else -1
    wanted = {c.name: c.max_bytes or -1 for c in configs if c.name is not None}
    limits = (await js.account_info()).limits
    cap = limits.storage_max_stream_bytes if limits.storage_max_stream_bytes is not None else -1
    need = reservation_needed(capped(wanted, cap), current)
    room = await storage_room(js, need, settings.stream_replicas, cap) if need > 0 else 0
    sizes = fit_streams(wanted, current, room, cap)
    if sizes is None:
        raise StreamsDoNotFit(
            f"JetStream has room for {format_bytes(room)} more, less than the streams' smallest limits need "
            f"({format_bytes(reservation_needed(floors(wanted, current, cap), current))}): give the server more "
            f"JetStream storage (max_file_store, or the account's limit) or set ALERT_TIMING_STREAM_MAX_BYTES "
            f"within it")
    if sizes != capped(wanted, cap):
        warning = history_held(sizes, settings)
        log.warning(warning, sized=sizes, room=room)
    # Streams that shrink first: the room they give back is counted for the others.
    configs.sort(key=lambda c: sizes[c.name or ""] > current.get(c.name or "", 0))
    for config in configs:
        assert config.name is not None
        config.max_bytes = sizes[config.name]
        if config.name in current:
            try:
                await js.update_stream(config)
            except APIError as exc:
                # A store holding more than this server reserves now (streams made on a
                # server with more storage): JetStream refuses any update, yet the stream
                # works as it is, with its own limits.
                if exc.err_code not in NO_ROOM_ERR_CODES:
                    raise
                log.warning("stream kept as it is: JetStream refuses to update it (insufficient storage)",
                            stream=config.name, max_bytes=current[config.name], error=exc.description)
                done.append(f"stream {config.name} kept as it is (JetStream refused the update: {exc.description})")
                continue
            done.append(f"stream {config.name} updated")
        else:
            await _add_stream(js, config)
            done.append(f"stream {config.name} created")
    try:
        await js.object_store(s.METRICS_SNAPSHOTS)
        done.append(f"object store {s.METRICS_SNAPSHOTS}")
    except BucketNotFoundError:
        await js.create_object_store(s.METRICS_SNAPSHOTS, api.ObjectStoreConfig(
            description="metrics state snapshots, two per partition (services/metrics/snapshot.py)",
            storage=api.StorageType.FILE, replicas=settings.stream_replicas))
        done.append(f"object store {s.METRICS_SNAPSHOTS} created")
    for spec in consumer_specs(settings.metrics_partitions) + deadletter_specs(settings.metrics_partitions):
        done.append(await ensure_consumer(js, spec))
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
) -> list[tuple[str, int]]:
    """Publish every message with its ``Nats-Msg-Id`` and wait for all acks together; where
    each is stored (stream, sequence: for a duplicate, the copy stored first)."""
    if not messages:
        return []
    futures: list[asyncio.Future] = []
    try:
        for m in messages:
            headers = {"Nats-Msg-Id": m.msg_id}
            if m.headers:
                headers.update(m.headers)
            futures.append(await js.publish_async(m.subject, m.payload, headers=headers))
        acks = await asyncio.wait_for(asyncio.gather(*futures), timeout)
        return [(ack.stream, ack.seq) for ack in acks]
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


# --------------------------------------------------------------------------- server limits


#: Server max_payload (embedded and deploy/nats): 4 MiB.
MAX_PAYLOAD = 4 * 1024 * 1024
#: Largest inbound message a stream accepts; larger ones are refused to the publisher.
MAX_INBOUND_BYTES = 1024 * 1024


def raise_if_cancelled() -> None:
    """Re-raise a cancellation that a pull request turned into another error.

    nats-py's ``fetch`` turns a cancellation that lands while the connection is closing into
    ``ConnectionClosedError`` (``Subscription.next_msg``); a loop that pulls again after an
    error would then never end. Called in such a loop's error paths: when the task is being
    cancelled (``Task.cancelling``), it ends."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
