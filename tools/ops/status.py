"""status: streams, service consumers and rejection counts."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext, api

from alert_timing.ops.common import (
    PROG,
    close,
    connect,
    describe,
    load_settings,
    now_ms,
    server_said,
)
from shared import bus
from shared import subjects as s
from shared.events import backlog_decoder
from shared.timefmt import parse_iso


def _ts(value: object) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, str) and value and not value.startswith("0001-01-01"):
        return value
    return None


async def collect_status(nc: Client, partitions: int) -> dict:
    from nats.js.errors import NotFoundError

    js = nc.jetstream(timeout=5)
    version = nc.connected_server_version
    result: dict[str, Any] = {"server_version": f"{version.major}.{version.minor}.{version.patch}" if version else None,
                              "streams": [], "consumers": [], "other_consumers": [],
                              "rejected": {}, "dead_letter": {}, "problems": []}
    existing: list[str] = []
    for name in s.STREAM_SUBJECTS:
        reply = await nc.request(f"$JS.API.STREAM.INFO.{name}", b"", timeout=5)
        info = json.loads(reply.data)
        if "error" in info:
            result["streams"].append({"name": name, "exists": False, "error": info["error"].get("description")})
            result["problems"].append(f"stream {name} is missing")
            continue
        existing.append(name)
        state = info.get("state", {})
        result["streams"].append({
            "name": name,
            "exists": True,
            "subjects": info.get("config", {}).get("subjects", []),
            "messages": state.get("messages", 0),
            "bytes": state.get("bytes", 0),
            "first_seq": state.get("first_seq", 0),
            "first_time": _ts(state.get("first_ts")),
            "last_seq": state.get("last_seq", 0),
            "last_time": _ts(state.get("last_ts")),
            "consumer_count": state.get("consumer_count", 0),
        })
    known: set[tuple[str, str]] = set()
    for spec in bus.consumer_specs(partitions):
        known.add((spec.stream, spec.durable))
        entry: dict[str, Any] = {"service": spec.service, "stream": spec.stream, "durable": spec.durable,
                                 "filter_subjects": list(spec.filter_subjects)}
        try:
            info = await js.consumer_info(spec.stream, spec.durable)
        except NotFoundError:
            entry["exists"] = False
            result["consumers"].append(entry)
            result["problems"].append(f"consumer {spec.stream}/{spec.durable} is missing")
            continue
        except (nats.errors.TimeoutError, TimeoutError, nats.js.errors.APIError) as exc:
            entry["exists"] = None
            entry["error"] = describe(exc) + server_said()
            result["consumers"].append(entry)
            result["problems"].append(f"consumer {spec.stream}/{spec.durable} could not be read")
            continue
        result["consumers"].append(entry | _consumer_fields(info))
    for name in existing:
        try:
            infos = await js.consumers_info(name)
        except Exception:  # noqa: BLE001 - listing is a nicety
            continue
        for info in infos:
            durable = info.config.durable_name
            if durable and (name, durable) not in known:
                result["other_consumers"].append({"stream": name, "durable": durable,
                                                  "filter_subjects": _filters(info.config)}
                                                 | _consumer_fields(info))
    if s.STREAM_EVENTS in existing:
        for key, prefix in (("rejected", s.REJECTED), ("dead_letter", s.DEAD_LETTER)):
            info = await js.stream_info(s.STREAM_EVENTS, subjects_filter=f"{prefix}.>")
            result[key] = {subject[len(prefix) + 1:]: count
                           for subject, count in sorted((info.state.subjects or {}).items())}
    if s.STREAM_OUT in existing:
        result["delivery"] = await delivery_backlogs(js, partitions)
        for d in result["delivery"]:
            if d.get("quarantined"):
                result["problems"].append(
                    f"delivery p{d['partition']}: {d['quarantined']} window file set(s) quarantined, other content "
                    f"at the landing zone under their names: {', '.join(d.get('quarantined_file_sets') or [])}")
    return result


async def delivery_backlogs(js: JetStreamContext, partitions: int) -> list[dict[str, Any]]:
    """The last backlog each metrics partition published (none: delivery is not configured)."""
    found = []
    for p in range(partitions):
        try:
            msg = await js.get_last_msg(s.STREAM_OUT, s.delivery_backlog(p))
        except nats.js.errors.NotFoundError:
            continue
        backlog = msgspec.to_builtins(backlog_decoder.decode(msg.data or b""))
        oldest = backlog.get("oldest_written_at")
        backlog["oldest_age_s"] = round((now_ms() - parse_iso(oldest)) / 1000) if oldest else None
        found.append(backlog)
    return found


def _filters(config: api.ConsumerConfig) -> list[str]:
    if config.filter_subjects:
        return list(config.filter_subjects)
    return [config.filter_subject] if config.filter_subject else []


def _consumer_fields(info: api.ConsumerInfo) -> dict:
    delivered = info.delivered
    floor = info.ack_floor
    waiting = info.num_waiting or 0
    return {
        "exists": True,
        "num_pending": info.num_pending or 0,
        "num_ack_pending": info.num_ack_pending or 0,
        "num_redelivered": info.num_redelivered or 0,
        "num_waiting": waiting,
        "pulling": waiting > 0,
        # a push durable (the services'): whether a subscriber is bound to its deliver subject
        "push": bool(info.config.deliver_subject),
        "push_bound": bool(info.push_bound),
        "delivered_stream_seq": delivered.stream_seq if delivered else 0,
        "ack_floor_stream_seq": floor.stream_seq if floor else 0,
        "last_delivered": _ts(delivered.last_active) if delivered else None,
        "last_acked": _ts(floor.last_active) if floor else None,
    }


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def status_text(result: dict, url: str) -> str:
    lines = [f"NATS {url}" + (f" (server {result['server_version']})" if result.get("server_version") else ""), ""]
    lines.append(f"{'stream':<12}{'messages':>10}{'bytes':>12}{'first seq':>11}  {'first time':<26}"
                 f"{'last seq':>10}  {'last time':<26}")
    for st in result["streams"]:
        if not st["exists"]:
            lines.append(f"{st['name']:<12}missing (run `{PROG} bootstrap`)")
            continue
        lines.append(f"{st['name']:<12}{st['messages']:>10,}{_size(st['bytes']):>12}{st['first_seq']:>11}  "
                     f"{st['first_time'] or '-':<26}{st['last_seq']:>10}  {st['last_time'] or '-':<26}")
    lines.append("")
    lines.append(f"{'service':<16}{'consumer':<30}{'pending':>9}{'ack pending':>13}{'redelivered':>13}"
                 f"{'ack floor':>11}  delivery")
    for c in result["consumers"] + result["other_consumers"]:
        name = f"{c['stream']}/{c['durable']}"
        service = c.get("service", "(other)")
        if c.get("exists") is None:
            lines.append(f"{service:<16}{name:<30}cannot read: {c.get('error')}")
            continue
        if not c.get("exists", True):
            lines.append(f"{service:<16}{name:<30}missing (run `{PROG} bootstrap`)")
            continue
        if c.get("push"):
            pulls = "pushed to a subscriber" if c["push_bound"] else "pushed, no subscriber"
        else:
            pulls = f"pulled, {c['num_waiting']} waiting" if c["pulling"] else "pulled, none waiting"
        lines.append(f"{service:<16}{name:<30}{c['num_pending']:>9,}{c['num_ack_pending']:>13,}"
                     f"{c['num_redelivered']:>13,}{c['ack_floor_stream_seq']:>11}  {pulls}")
    lines.append("")
    for key, label in (("rejected", "rejected by stage"), ("dead_letter", "dead letters by stage")):
        counts = result[key]
        text = ", ".join(f"{stage} {n:,}" for stage, n in counts.items()) if counts else "none"
        lines.append(f"{label + ':':<24}{text}")
    for d in result.get("delivery", []):
        behind = (f"{d['pending']} window file sets pending, oldest {d['oldest_file_set']} "
                  f"({d['oldest_age_s']} s)") if d["pending"] else "nothing pending"
        error = f"; last error: {d['last_error']}" if d.get("last_error") else ""
        held = f", {d['quarantined']:,} quarantined" if d.get("quarantined") else ""
        lines.append(f"{'delivery p' + str(d['partition']) + ':':<24}{d['landing']}: {behind}, "
                     f"{d['delivered']:,} delivered{held} (as of {d['at']}){error}")
    restarts = result.get("restarts") or {}
    text = ", ".join(f"{key} {entry.get('restarts', 0)} (last {entry.get('last_restart', '-')})"
                     for key, entry in sorted(restarts.items())) if restarts else "none"
    lines.append(f"{'restarted by up:':<24}{text}")
    if result["problems"]:
        lines += ["", "problems: " + "; ".join(result["problems"])]
    return "\n".join(lines)


async def status_command(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    nc = await connect(settings, "status")
    try:
        result = await collect_status(nc, settings.metrics_partitions)
    finally:
        await close(nc)
    result["nats_url"] = settings.nats_url
    # Restarts by `alert-timing up` (its supervisor writes them to the data directory).
    from alert_timing.supervisor import read_restarts

    result["restarts"] = read_restarts(Path(settings.data_dir))
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(status_text(result, settings.nats_url))
    return 1 if result["problems"] else 0


# --------------------------------------------------------------------------- docs (AsyncAPI)

