"""What the operations commands share: connecting, one-line errors, readable event lines."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from shared import bus
from shared import settings as settings_mod
from shared import subjects as s
from shared.eventlog import LogReadError
from shared.events import LEG_SPANS
from shared.tasks import stop_tasks
from shared.timefmt import format_iso

PROG = "alert-timing"
DEFAULT_DOCS_PATH = Path("docs") / "asyncapi.json"
EVENT_TIME_FIELDS = ("device_alert_time", "chf_received", "csp_received", "csp_sent", "dsp_received",
                     "su_passed", "su_acknowledged", "time")

json_decoder = msgspec.json.Decoder()


class OpsError(Exception):
    """A problem to tell the user in one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class Done(Exception):
    """``--count`` lines written."""


#: The last error the server reported asynchronously (e.g. a permissions violation).
ASYNC_ERRORS: list[BaseException] = []


# --------------------------------------------------------------------------- plumbing


def load_settings(args: argparse.Namespace) -> settings_mod.Settings:
    return settings_mod.load(nats_url=getattr(args, "nats_url", None))


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


async def connect(settings: settings_mod.Settings, command: str, *, follow: bool = False,
                  reconnect_attempts: int | None = None) -> Client:
    """Connect, failing fast with the real cause when the server cannot be reached. Once
    connected, reconnect ``reconnect_attempts`` times (-1: forever) when the connection is lost;
    by default forever when following live traffic, else 10 (a short blip)."""
    import nats.errors

    errors: list[BaseException] = []
    notices: dict[str, bool] = {"connected": False}
    holder: dict[str, Any] = {}
    ASYNC_ERRORS.clear()

    async def on_error(exc: Exception) -> None:
        errors.append(exc)
        del errors[:-5]
        ASYNC_ERRORS[:] = [exc]
        if notices["connected"] and isinstance(exc, nats.errors.SlowConsumerError):
            note(f"{PROG} {command}: output too slow, messages dropped")

    async def on_disconnect() -> None:
        client = holder.get("nc")
        if follow and client is not None and not (client.is_closed or client.is_draining):
            note(f"{PROG} {command}: disconnected from NATS, reconnecting...")

    async def on_reconnect() -> None:
        if follow:
            note(f"{PROG} {command}: reconnected")

    try:
        nc = await bus.connect(settings, f"{PROG}-{command}", max_reconnect_attempts=1, connect_timeout=3,
                               error_cb=on_error, disconnected_cb=on_disconnect, reconnected_cb=on_reconnect)
    except Exception as exc:  # noqa: BLE001 - NoServersError, OSError, TimeoutError, auth errors: one line
        cause = errors[-1] if errors else exc
        raise OpsError(f"cannot reach NATS at {settings.nats_url}: {describe(cause)}") from None
    # Once connected, ride out broker restarts (a live tail) or short blips (a scan).
    if reconnect_attempts is None:
        reconnect_attempts = -1 if follow else 10
    nc.options["max_reconnect_attempts"] = reconnect_attempts
    notices["connected"] = True
    holder["nc"] = nc
    return nc


async def close(nc: Client) -> None:
    try:
        await asyncio.wait_for(nc.close(), 5)
    except Exception:  # noqa: BLE001 - closing is best effort
        pass


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def command(name: str, body: Callable[[argparse.Namespace], Any],
            interrupted: int = 130) -> Callable[[argparse.Namespace], int]:
    """Run an async command body: one-line errors, exit status, Ctrl-C and closed pipes."""

    def invoke(args: argparse.Namespace) -> int:
        return int(asyncio.run(until_interrupted(body(args))) or 0)

    return one_line(name, invoke, interrupted)


async def until_interrupted(body: Awaitable[Any]) -> Any:
    """A command's body, ended by Ctrl-C: cancelled, and cancelled again while it goes on
    (``shared.tasks.stop_tasks``: a cancellation that lands as a reply arrives is dropped, and
    ``tail`` then read on into following live, for ever), then ``KeyboardInterrupt``."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(body)
    ctrl_c = asyncio.Event()
    try:
        loop.add_signal_handler(signal.SIGINT, ctrl_c.set)
    except (ValueError, RuntimeError):  # not the main thread: Ctrl-C is not ours to handle
        return await task
    waiter = asyncio.ensure_future(ctrl_c.wait())
    try:
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await stop_tasks([task], grace_s=2.0)
            raise KeyboardInterrupt
        return task.result()
    finally:
        waiter.cancel()
        loop.remove_signal_handler(signal.SIGINT)


def one_line(name: str, run_command: Callable[[argparse.Namespace], int | None],
             interrupted: int = 130) -> Callable[[argparse.Namespace], int]:
    """Run any command: a problem is one line on stderr (``alert-timing NAME: ...``) and exit
    status 2 (or the OpsError's code), never a traceback; Ctrl-C and closed pipes quietly."""

    def invoke(args: argparse.Namespace) -> int:
        try:
            return int(run_command(args) or 0)
        except BaseExceptionGroup as group:  # from a task group: report the first real cause
            leaf: BaseException = group
            while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
                leaf = leaf.exceptions[0]
            raise leaf from None

    def run(args: argparse.Namespace) -> int:
        import nats.errors
        import nats.js.errors

        from shared import bus

        try:
            return invoke(args)
        except OpsError as exc:
            note(f"{PROG} {name}: {exc}")
            return exc.code
        except (LogReadError, settings_mod.ConfigError) as exc:
            note(f"{PROG} {name}: {exc}")
            return 2
        except KeyboardInterrupt:
            return interrupted
        except BrokenPipeError:
            quiet_stdout()
            return 0
        except (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError):
            note(f"{PROG} {name}: JetStream is not available on this server (not enabled, or this user "
                  f"may not use its API){server_said()}")
            return 2
        except nats.js.errors.APIError as exc:
            note(f"{PROG} {name}: JetStream refused the request: {exc.description or describe(exc)}")
            return 2
        except (nats.errors.TimeoutError, TimeoutError):
            note(f"{PROG} {name}: NATS did not answer in time{server_said()}")
            return 2
        except OSError as exc:
            if exc.filename is not None:  # a file or directory of the command's, not the connection
                note(f"{PROG} {name}: {exc.strerror or describe(exc)}: {exc.filename}")
            else:
                note(f"{PROG} {name}: NATS request failed: {describe(exc)}{server_said()}")
            return 2
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            note(f"{PROG} {name}: NATS request failed: {describe(exc)}{server_said()}")
            return 2
        except bus.PublishError as exc:
            note(f"{PROG} {name}: {exc}{server_said()}")
            return 2
        except bus.StreamsDoNotFit as exc:
            note(f"{PROG} {name}: {exc}")
            return 2
        except Exception as exc:  # noqa: BLE001 - the promise is one line, not a traceback
            note(f"{PROG} {name}: unexpected error: {type(exc).__name__}: {describe(exc)}")
            return 2

    return run


def server_said() -> str:
    return f" (server said: {describe(ASYNC_ERRORS[-1])})" if ASYNC_ERRORS else ""


def quiet_stdout() -> None:
    """After a closed pipe (``| head``), stop Python complaining when it flushes stdout."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def stored_ms(msg: Msg) -> int:
    """When JetStream stored a consumed message, epoch ms, exact: from the nanoseconds in its
    ack subject (nats-py's ``metadata.timestamp`` goes through a float and can land a
    microsecond off, a millisecond off a direct get of the same message)."""
    tokens = (msg.reply or "").split(".")
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>
        return int(tokens[7]) // 1_000_000
    if len(tokens) >= 11:  # with domain and account hash
        return int(tokens[Msg.Ack.Timestamp]) // 1_000_000
    return int(msg.metadata.timestamp.timestamp() * 1000)


def direct_stored_ms(msg: RawStreamMsg) -> int:
    """When JetStream stored a message read by sequence (a direct get), epoch ms, exact: from
    its ``Nats-Time-Stamp`` (RFC 3339, nanoseconds), as ``stored_ms`` reads it."""
    text = (msg.headers or {}).get("Nats-Time-Stamp")
    if text and text.endswith("Z"):
        whole, _, fraction = text[:-1].partition(".")
        seconds = int(datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp())
        return seconds * 1000 + int((fraction + "000")[:3])
    return int(msg.time.timestamp() * 1000) if msg.time else 0


def now_ms() -> int:
    return int(time.time() * 1000)


def iso_or_dash(ms: object) -> str:
    if isinstance(ms, bool) or not isinstance(ms, int):
        return "-" if ms is None else str(ms)
    return format_iso(ms) or "-"


def shorten(data: bytes | str, limit: int = 200) -> str:
    """One line of at most ``limit`` characters: whitespace collapsed, the rest cut with ``...``."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- subjects


def valid_pattern(pattern: str) -> bool:
    tokens = pattern.split(".")
    if not pattern or any(c.isspace() for c in pattern):
        return False
    for i, token in enumerate(tokens):
        if not token:
            return False
        if token == ">" and i != len(tokens) - 1:
            return False
        if (">" in token or "*" in token) and token not in (">", "*"):
            return False
    return True


def stream_filters(pattern: str) -> list[tuple[str, list[str]]]:
    """Each stream holding subjects that ``pattern`` matches, with the filters to read them."""
    plan = []
    for stream, subjects in s.STREAM_SUBJECTS.items():
        filters = sorted({f for subj in subjects if (f := s.intersect(pattern, subj)) is not None})
        if filters:
            plan.append((stream, filters))
    return plan


# --------------------------------------------------------------------------- formatting


def _kv(pairs: Iterable[tuple[str, object]]) -> str:
    parts = []
    for key, value in pairs:
        if isinstance(value, (list, tuple)):
            if not value:
                continue
            value = ",".join(str(v) for v in value)
        elif value is None:
            value = "-"
        parts.append(f"{key}={value}")
    return " ".join(parts)


def _times(event: dict, names: Sequence[str]) -> list[tuple[str, object]]:
    return [(n, iso_or_dash(event.get(n))) for n in names]


def event_summary(event: dict) -> str:
    """One event of an envelope in one line: type, ids and key times."""
    kind = event.get("type", "?")
    g = event.get
    if kind == "alert_captured":
        body = [("response_id", g("response_id")), ("region", g("region")), ("hub", g("comms_hub_id"))]
        body += _times(event, ("chf_received", "csp_received", "csp_sent", "dsp_received"))
        body += [("dsp_source", g("dsp_received_source"))]
    elif kind == "alert_enriched":
        body = [("response_id", g("response_id")), ("region", g("region")), ("alert_code", g("alert_code")),
                ("message_code", g("message_code")), ("recipient", g("recipient"))]
        body += _times(event, ("device_alert_time", "chf_received", "csp_received", "csp_sent", "dsp_received"))
        body += [("flags", g("flags"))]
    elif kind == "outage_notified":
        body = [("response_id", g("response_id")), ("region", g("region")), ("hub", g("comms_hub_id")),
                ("outage_s", g("outage_duration_s"))]
        body += _times(event, ("chf_received", "csp_received", "csp_sent", "dsp_received"))
    elif kind == "service_response_seen":
        body = [("response_id", g("response_id")), ("region", g("region")), ("cra_flag", g("cra_flag")),
                ("message_code", g("message_code")), *_times(event, ("dsp_received",))]
    elif kind == "delivery_expected":
        body = [("delivery_id", g("delivery_id")), ("response_id", g("response_id")),
                ("category", g("category")), ("alert_code", g("alert_code")),
                ("dcc_alert_code", g("dcc_alert_code")), ("service_user", g("service_user_id"))]
        body += _times(event, ("chf_received", "csp_sent", "dsp_received"))
    elif kind == "delivery_attempted":
        body = [("delivery_id", g("delivery_id")), ("response_id", g("response_id")), ("outcome", g("outcome"))]
        body += _times(event, ("su_passed", "su_acknowledged"))
        if g("throttled_count") is not None:
            body += [("throttled_count", g("throttled_count"))]
    elif kind == "clock_tick":
        body = _times(event, ("time",))
    elif kind == "rejected_input":
        return rejection_summary(event)
    else:
        return f"{kind} {shorten(msgspec.json.encode(event), 160)}"
    return f"{kind} {_kv(body)}"


def rejection_summary(event: dict) -> str:
    body = [("stage", event.get("stage")), ("reason", event.get("reason")),
            ("subject", event.get("subject")), ("source_seq", event.get("source_seq"))]
    return f"rejected_input {_kv(body)} message={shorten(str(event.get('message', '')), 160)!r}"


def record_summary(record: dict) -> str:
    body: list[tuple[str, object]] = [
        ("delivery_id", record.get("delivery_id")), ("response_id", record.get("response_id")),
        ("rev", record.get("revision")), ("status", record.get("status")),
        ("dcc_alert_code", record.get("dcc_alert_code")),
    ]
    body += [(leg.name, record.get(leg.field)) for leg in LEG_SPANS]
    body += [("attempts", record.get("delivery_attempts")), ("flags", record.get("flags"))]
    return f"record {_kv(body)}"


def deliver_summary(notice: dict) -> str:
    return "deliver " + _kv([("delivery_id", notice.get("deliveryId")), ("response_id", notice.get("responseId")),
                             ("dcc_alert_code", notice.get("dccAlertCode")),
                             ("service_user", notice.get("serviceUserId"))])


def report_summary(report: dict) -> str:
    rows = report.get("rows") or []
    total = next((r for r in rows if isinstance(r, dict) and r.get("region") == "all"
                  and r.get("category") == "all"), None)
    body: list[tuple[str, object]] = [("window", f"{report.get('window_start')}..{report.get('window_end')}"),
                                      ("rev", report.get("revision"))]
    if total:
        body += [("alerts", total.get("alerts")), ("complete", total.get("complete")),
                 ("rejected", total.get("rejected"))]
    return f"report {_kv(body)}"


def message_lines(subject: str, data: bytes) -> list[str]:
    """A message as readable lines (one per event inside an envelope), without the time."""
    if subject.startswith("ast.in."):
        return [f"{subject} {shorten(data)}"]
    try:
        obj = json_decoder.decode(data)
    except msgspec.DecodeError:
        return [f"{subject} (unreadable, {len(data)} bytes) {shorten(data, 120)}"]
    if not isinstance(obj, dict):
        return [f"{subject} {shorten(data)}"]
    if subject.startswith((s.REJECTED + ".", s.DEAD_LETTER + ".")):
        return [f"{subject} {rejection_summary(obj)}"]
    if subject == s.DELIVER:
        return [f"{subject} {deliver_summary(obj)}"]
    if subject == s.RECORD:
        return [f"{subject} {record_summary(obj)}"]
    if subject == s.REPORT_15M:
        return [f"{subject} {report_summary(obj)}"]
    events = obj.get("events")
    if isinstance(events, list):
        return [f"{subject} {event_summary(e) if isinstance(e, dict) else shorten(str(e))}" for e in events] \
            or [f"{subject} (empty envelope)"]
    return [f"{subject} {shorten(data)}"]


def json_line(data: bytes) -> str:
    """The message's JSON on one line (compacted only when the sender spread it over several)."""
    if b"\n" not in data and b"\r" not in data:
        return data.decode("utf-8", "replace")
    try:
        return msgspec.json.encode(json_decoder.decode(data)).decode()
    except msgspec.DecodeError:
        return data.decode("utf-8", "replace").replace("\r", "\\r").replace("\n", "\\n")


class Printer:
    """Writes messages as lines to stdout; raises ``Done`` after ``count`` lines."""

    def __init__(self, as_json: bool, count: int | None, out: TextIO | None = None) -> None:
        self.as_json = as_json
        self.count = count
        self.written = 0
        self.out = out or sys.stdout

    def emit(self, subject: str, data: bytes, when_ms: int) -> None:
        if self.as_json:
            lines = [json_line(data)]
        else:
            stamp = iso_or_dash(when_ms)
            lines = [f"{stamp} {line}" for line in message_lines(subject, data)]
        for line in lines:
            self.out.write(line + "\n")
            self.written += 1
            if self.count is not None and self.written >= self.count:
                self.out.flush()
                raise Done
        self.out.flush()



async def unsubscribe(sub: Subscription | JetStreamContext.PullSubscription) -> None:
    try:
        await asyncio.wait_for(sub.unsubscribe(), 2)
    except Exception:  # noqa: BLE001 - the connection may be gone already
        pass

