"""Delivery of every window's files to DS&A's landing zone: the File Gateway over SFTP, or a directory.

What arrives, per window revision (the same names as the local files, ``services.metrics.files``)::

    PATH/date=YYYY-MM-DD/ast_YYYYMMDDTHHMM_rN.csv
    PATH/date=YYYY-MM-DD/ast_YYYYMMDDTHHMM_rN.parquet
    PATH/date=YYYY-MM-DD/ast_YYYYMMDDTHHMM_rN.json
    PATH/date=YYYY-MM-DD/ast_YYYYMMDDTHHMM_rN.sha256     <hex>  <file name>, one line per file, written last

Each file is uploaded under a temporary name (``.<name>.partial``) and renamed into place, so a
reader never sees a partial file; the ``.sha256`` goes last, so its presence means the set is
whole. A revision is a new set of names: nothing at the landing zone is ever overwritten. The
rename is SFTP's plain one, which refuses a name that exists (``posix-rename`` would replace it),
and a directory landing zone links the file into place for the same reason.

A set interrupted after some files (the gateway or the process went away) is resumed: a file
already at the landing zone under its final name is compared by SHA-256 and, when identical, kept
and not sent again. A file (or ``.sha256``) there with other content is never overwritten: the
set is *quarantined*. It blocks only itself: later sets still go; it is logged once, counted in
``ast.delivery-backlog.<partition>`` (``alert-timing status``) and in the
``alert_timing.delivery.quarantined_windows`` gauge, and examined again every
``recheck_quarantined_s`` (an operator who clears the conflict at the gateway needs no restart).

Never lost, never doubled: what was delivered is recorded as a ``WindowDelivered`` event on
``ast.delivered.<partition>`` (``Nats-Msg-Id`` ``delivered:<landing>:<file set>``). On start the
deliverer reads those events back and delivers every complete local file set that has none, oldest
first. A set is looked at for ``ALERT_TIMING_DELIVERY_HORIZON_DAYS`` after it was written (and while
its date is that close to the newest one); ``AST_OUT`` keeps the receipts at least that long
(``shared.bus.receipts_max_age_s``), so a set within the horizon always finds its receipt. A set
whose ``.sha256`` is already at the landing zone (delivered, then the process died before the
event was stored) is not uploaded again: its manifest is compared with ours and the event is
published. While the landing zone fails, the deliverer retries with exponential backoff
(capped at ``ALERT_TIMING_DELIVERY_RETRY_MAX_S``) and says why in one log line per failure; what it
still has to deliver goes to ``ast.delivery-backlog.<partition>`` (read by ``alert-timing status``)
and to the ``alert_timing.delivery.*`` metrics.

SFTP authenticates with the private key at ``ALERT_TIMING_DELIVERY_KEY`` and checks the gateway's
host key against ``ALERT_TIMING_DELIVERY_KNOWN_HOSTS``: there is no trust on first use; without a
known-hosts file SFTP delivery does not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import os
import re
import shutil
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import structlog

from shared import subjects as s
from shared.bus import Outgoing
from shared.events import DeliveredFile, DeliveryBacklog, WindowDelivered, encoder
from shared.telemetry.metrics import OLDEST_PENDING_AGE, PENDING_WINDOWS, QUARANTINED_WINDOWS, Instrument
from shared.timefmt import format_iso

with warnings.catch_warnings():
    # asyncssh (2.24) names cryptography's DSA key types as it is imported, and cryptography 51
    # warns of their deprecation: two lines on the stderr of every service and command, before
    # its one error line. No DSA key is used here (the gateway's are ed25519, ECDSA or RSA).
    warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"asyncssh\b")
    import asyncssh

log = structlog.get_logger()

#: Local file name -> (window stem, partition or None, revision).
_STEM = re.compile(r"^ast_(\d{8}T\d{4})(?:_p(\d+))?_r(\d+)$")
#: What a window's set holds locally, in upload order (the report last: it marks the set complete).
SET_SUFFIXES = (".csv", ".parquet", ".json")
MANIFEST_SUFFIX = ".sha256"


class DeliveryConfigError(Exception):
    """The delivery settings cannot work (bad URL, no key, no known-hosts file)."""


class LandingError(Exception):
    """The landing zone refused or failed an operation; retried with backoff."""


class LandingExists(Exception):
    """The final name is taken at the landing zone: nothing was replaced."""


# --------------------------------------------------------------------------- pure planning


@dataclass(frozen=True)
class FileSet:
    """One window revision's local files: ``stem`` e.g. ``ast_20230601T1015_r1``."""

    stem: str
    date: str  # YYYY-MM-DD, the folder name's date
    partition: int
    paths: tuple[Path, ...]
    written_ms: int  # when the set became complete locally (the report's mtime)

    @property
    def folder(self) -> str:
        return f"date={self.date}"


def partition_of_stem(stem: str) -> int | None:
    """The metrics partition whose file set this is (0 for untagged names); None if not ours."""
    m = _STEM.match(stem)
    if m is None:
        return None
    return int(m.group(2)) if m.group(2) is not None else 0


def local_file_sets(data_dir: Path, horizon_days: int, now_ms: int | None = None) -> list[FileSet]:
    """Complete file sets under ``data_dir/ast`` in the date folders no more than ``horizon_days``
    before the newest one (event time: a replay of old days delivers too) and written no more than
    ``horizon_days`` before ``now_ms`` (the wall clock: the receipts in ``AST_OUT`` are kept by
    age, so a set is only looked at while its receipt is surely still there), oldest window
    first. A set is complete when its report (``.json``) is there: the metrics service writes it
    last."""
    root = Path(data_dir) / "ast"
    sets: list[FileSet] = []
    if not root.is_dir():
        return sets
    folders = sorted(f for f in root.glob("date=*") if f.is_dir())
    if not folders:
        return sets
    newest = datetime.date.fromisoformat(folders[-1].name[5:])
    since = (newest - datetime.timedelta(days=horizon_days)).isoformat()
    written_since = (int(time.time() * 1000) if now_ms is None else now_ms) - horizon_days * 86_400_000
    for folder in folders:
        date = folder.name[5:]
        if date < since:
            continue
        for report in sorted(folder.glob("ast_*.json")):
            stem = report.name[: -len(".json")]
            partition = partition_of_stem(stem)
            if partition is None:
                continue
            paths = tuple(folder / f"{stem}{suffix}" for suffix in SET_SUFFIXES)
            if not all(p.exists() for p in paths):
                continue
            written_ms = int(report.stat().st_mtime * 1000)
            if written_ms < written_since:
                continue
            sets.append(FileSet(stem, date, partition, paths, written_ms))
    return sets


def pending_sets(sets: Iterable[FileSet], delivered: set[str], partitions: Iterable[int]) -> list[FileSet]:
    """The sets of our partitions not yet delivered, oldest window (then revision) first."""
    owned = set(partitions)
    todo = [fs for fs in sets if fs.partition in owned and fs.stem not in delivered]
    return sorted(todo, key=lambda fs: (fs.date, _order(fs.stem)))


def _order(stem: str) -> tuple[str, int, int]:
    m = _STEM.match(stem)
    assert m is not None  # only ever called on sets that parsed
    return (m.group(1), int(m.group(2) or 0), int(m.group(3)))


def manifest(entries: Iterable[tuple[str, str]]) -> bytes:
    """``sha256sum`` format: ``<hex>  <file name>`` per file."""
    return "".join(f"{digest}  {name}\n" for name, digest in entries).encode()


def file_digest(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


# --------------------------------------------------------------------------- landing zones


class Landing(Protocol):
    """Where the files go. ``name``: the URL without credentials (in events and logs)."""

    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def read(self, rel: str) -> bytes | None:
        """The file's bytes, or None when there is no such file."""
        ...

    async def digest(self, rel: str) -> str | None:
        """The SHA-256 (hex) of the file at ``rel``, or None when there is no such file."""
        ...

    async def put(self, data_from: Path | bytes, rel: str) -> None:
        """Write ``rel`` (folders made as needed) under a temporary name, then move it into place
        unless the name is taken: then ``LandingExists``, and the file there is left as it was."""
        ...


def landing_from_settings(url: str, key: str | None, known_hosts: str | None) -> Landing:
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise DeliveryConfigError(f"ALERT_TIMING_DELIVERY_URL={url}: a file URL names no host (file:///PATH)")
        return DirectoryLanding(Path(unquote(parts.path)))
    if parts.scheme == "sftp":
        if not parts.hostname or not parts.username:
            raise DeliveryConfigError(f"ALERT_TIMING_DELIVERY_URL={url}: expected sftp://USER@HOST:PORT/PATH")
        if not key:
            raise DeliveryConfigError("SFTP delivery needs ALERT_TIMING_DELIVERY_KEY (the private key file)")
        if not known_hosts:
            raise DeliveryConfigError("SFTP delivery needs ALERT_TIMING_DELIVERY_KNOWN_HOSTS: the gateway's host key "
                                      "is always checked, never trusted on first use")
        for what, path in (("ALERT_TIMING_DELIVERY_KEY", key), ("ALERT_TIMING_DELIVERY_KNOWN_HOSTS", known_hosts)):
            if not Path(path).is_file():
                raise DeliveryConfigError(f"{what}={path}: no such file")
        return SftpLanding(parts.hostname, parts.port or 22, unquote(parts.username), unquote(parts.path) or ".",
                           key, known_hosts)
    raise DeliveryConfigError(f"ALERT_TIMING_DELIVERY_URL={url}: use sftp://USER@HOST:PORT/PATH or file:///PATH")


class DirectoryLanding:
    """A directory (a mounted share, or the default for tests and laptops)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = f"file://{root}"

    async def open(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    async def read(self, rel: str) -> bytes | None:
        path = self.root / rel
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise LandingError(f"{self.name}: cannot read {rel}: {exc.strerror or exc}") from None

    async def digest(self, rel: str) -> str | None:
        path = self.root / rel
        try:
            return (await asyncio.to_thread(file_digest, path))[0]
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise LandingError(f"{self.name}: cannot read {rel}: {exc.strerror or exc}") from None

    async def put(self, data_from: Path | bytes, rel: str) -> None:
        await asyncio.to_thread(self._put, data_from, rel)

    def _put(self, data_from: Path | bytes, rel: str) -> None:
        target = self.root / rel
        tmp = target.with_name(f".{target.name}.partial")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data_from, bytes):
                tmp.write_bytes(data_from)
            else:
                shutil.copyfile(data_from, tmp)
            with tmp.open("rb") as fh:
                os.fsync(fh.fileno())
            try:
                os.link(tmp, target)  # unlike a rename, never replaces what is there
            except FileExistsError:
                tmp.unlink()
                raise LandingExists(rel) from None
            tmp.unlink()
        except OSError as exc:
            raise LandingError(f"{self.name}: cannot write {rel}: {exc.strerror or exc}") from None


class SftpLanding:
    """DS&A's File Gateway over SFTP (asyncssh): key authentication, host key checked."""

    def __init__(self, host: str, port: int, user: str, path: str, key: str, known_hosts: str) -> None:
        self.host, self.port, self.user, self.path = host, port, user, path.rstrip("/") or "/"
        self.key, self.known_hosts = key, known_hosts
        self.name = f"sftp://{host}:{port}{self.path}"
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None

    async def open(self) -> None:
        try:
            self._conn = await asyncio.wait_for(asyncssh.connect(
                self.host, self.port, username=self.user, client_keys=[self.key], known_hosts=self.known_hosts,
                agent_path=None, config=None), 15)
            self._sftp = await self._conn.start_sftp_client()
        except asyncssh.HostKeyNotVerifiable:
            await self.close()
            raise LandingError(f"{self.name}: the gateway's host key is not in "
                               f"ALERT_TIMING_DELIVERY_KNOWN_HOSTS ({self.known_hosts}): connection refused") from None
        except asyncssh.PermissionDenied:
            await self.close()
            raise LandingError(f"{self.name}: the gateway refused the key for user {self.user}") from None
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            await self.close()
            raise LandingError(f"{self.name}: cannot connect: {_describe(exc)}") from None

    async def close(self) -> None:
        if self._sftp is not None:
            self._sftp.exit()
            self._sftp = None
        if self._conn is not None:
            self._conn.close()
            try:
                await asyncio.wait_for(self._conn.wait_closed(), 5)
            except (TimeoutError, OSError, asyncssh.Error):
                pass
            self._conn = None

    def _client(self) -> asyncssh.SFTPClient:
        if self._sftp is None:
            raise LandingError(f"{self.name}: not connected")
        return self._sftp

    async def read(self, rel: str) -> bytes | None:
        sftp = self._client()
        try:
            async with sftp.open(f"{self.path}/{rel}", "rb") as fh:
                data = await fh.read()
                return data if isinstance(data, bytes) else data.encode()
        except asyncssh.SFTPNoSuchFile:
            return None
        except (OSError, asyncssh.Error) as exc:
            raise LandingError(f"{self.name}: cannot read {rel}: {_describe(exc)}") from None

    async def digest(self, rel: str) -> str | None:
        sftp = self._client()
        h = hashlib.sha256()
        try:
            async with sftp.open(f"{self.path}/{rel}", "rb") as fh:
                while chunk := await fh.read(1 << 18):
                    h.update(chunk if isinstance(chunk, bytes) else chunk.encode())
        except asyncssh.SFTPNoSuchFile:
            return None
        except (OSError, asyncssh.Error) as exc:
            raise LandingError(f"{self.name}: cannot read {rel}: {_describe(exc)}") from None
        return h.hexdigest()

    async def put(self, data_from: Path | bytes, rel: str) -> None:
        sftp = self._client()
        target = f"{self.path}/{rel}"
        folder, _, name = target.rpartition("/")
        tmp = f"{folder}/.{name}.partial"
        try:
            await sftp.makedirs(folder, exist_ok=True)
            if isinstance(data_from, bytes):
                async with sftp.open(tmp, "wb") as fh:
                    await fh.write(data_from)
            else:
                await sftp.put(str(data_from), tmp)
        except (OSError, asyncssh.Error) as exc:
            raise LandingError(f"{self.name}: cannot write {rel}: {_describe(exc)}") from None
        try:
            # SFTP's own rename refuses an existing name (posix-rename would replace it)
            await sftp.rename(tmp, target)
        except (OSError, asyncssh.Error) as exc:
            try:
                taken = await sftp.exists(target)
            except (OSError, asyncssh.Error):
                taken = False
            if taken:
                with contextlib.suppress(OSError, asyncssh.Error):
                    await sftp.remove(tmp)
                raise LandingExists(rel) from None
            raise LandingError(f"{self.name}: cannot write {rel}: {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or str(exc).strip()
    return reason or type(exc).__name__


# --------------------------------------------------------------------------- the deliverer


Publish = Callable[[list[Outgoing]], Awaitable[None]]
ReadDelivered = Callable[[int], Awaitable[set[str]]]
Gauge = Callable[[Instrument, float, int], None]


class Deliverer:
    """Delivers the owned partitions' window files, oldest first, exactly once per name."""

    def __init__(self, landing: Landing, data_dir: Path, partitions: list[int], publish: Publish,
                 read_delivered: ReadDelivered, *, retry_max_s: float = 300.0, horizon_days: int = 8,
                 interval_s: float = 5.0, gauge: Gauge | None = None,
                 recheck_quarantined_s: float = 3600.0) -> None:
        self.landing = landing
        self.data_dir = Path(data_dir)
        self.partitions = partitions
        self.publish = publish
        self.read_delivered = read_delivered
        self.retry_max_s = retry_max_s
        self.horizon_days = horizon_days
        self.interval_s = interval_s
        self.gauge = gauge
        self.delivered: set[str] = set()
        self.loaded = False
        self.connected = False
        self.last_error: str | None = None
        self.files_sent = 0
        self.files_kept = 0  # already at the landing zone, identical: not sent again
        self.recheck_quarantined_s = recheck_quarantined_s
        #: file set -> (why, when it was last examined: time.monotonic())
        self.quarantined: dict[str, tuple[str, float]] = {}
        self._last_backlog: dict[int, tuple[int, str | None, str | None, tuple[str, ...]]] = {}

    async def run(self) -> None:
        """Forever: deliver what is pending; on failure back off (1 s doubling to the ceiling)."""
        delay = 1.0
        while True:
            try:
                await self.deliver_pending()
                delay = 1.0
                await asyncio.sleep(self.interval_s)
            except asyncio.CancelledError:
                await self._disconnect()
                raise
            except LandingError as exc:
                await self._failed(str(exc), delay)
                delay = min(delay * 2, self.retry_max_s)
            except Exception as exc:  # noqa: BLE001 - NATS or local I/O: said once per failure, retried
                await self._failed(f"{type(exc).__name__}: {_describe(exc)}", delay)
                delay = min(delay * 2, self.retry_max_s)

    async def _failed(self, reason: str, delay: float) -> None:
        self.last_error = reason
        log.warning("window delivery failed; retrying", error=reason, retry_in_s=delay)
        await self._disconnect()
        try:
            await self._report_backlog(self._pending())
        except Exception as exc:  # noqa: BLE001 - the backlog is advisory; the retry matters
            log.debug("delivery backlog not published", error=str(exc))
        await asyncio.sleep(delay)

    async def _disconnect(self) -> None:
        if self.connected:
            self.connected = False
            await self.landing.close()

    def _pending(self) -> list[FileSet]:
        """What is to deliver: not delivered, and not quarantined (unless due to be examined again)."""
        now = time.monotonic()
        resting = {stem for stem, (_, at) in self.quarantined.items() if now - at < self.recheck_quarantined_s}
        return pending_sets(local_file_sets(self.data_dir, self.horizon_days), self.delivered | resting,
                            self.partitions)

    async def deliver_pending(self) -> int:
        """One pass; returns the number of sets delivered (quarantined ones are not counted)."""
        if not self.loaded:
            for p in self.partitions:
                self.delivered |= await self.read_delivered(p)
            self.loaded = True
        todo = await asyncio.to_thread(self._pending)
        await self._report_backlog(todo)
        done = 0
        for i, fs in enumerate(todo):
            if not self.connected:
                await self.landing.open()
                self.connected = True
            done += await self._deliver(fs)
            self.last_error = None
            await self._report_backlog(todo[i + 1:])
        return done

    async def _deliver(self, fs: FileSet) -> bool:
        """Deliver one set and store its receipt (True), or quarantine it (False)."""
        digests = [(p.name, *(await asyncio.to_thread(file_digest, p))) for p in fs.paths]
        ours = manifest((name, digest) for name, digest, _ in digests)
        manifest_rel = f"{fs.folder}/{fs.stem}{MANIFEST_SUFFIX}"
        there = await self.landing.read(manifest_rel)
        if there is None:
            for path, (name, digest, _) in zip(fs.paths, digests, strict=True):
                conflict = await self._place(path, f"{fs.folder}/{name}", digest)
                if conflict:
                    return self._quarantine(fs, conflict)
            try:
                await self.landing.put(ours, manifest_rel)
                self.files_sent += 1
            except LandingExists:
                there = await self.landing.read(manifest_rel)
            log.info("window delivered", file_set=fs.stem, landing=self.landing.name)
        if there is not None and there != ours:
            return self._quarantine(fs, f"{manifest_rel} is already there with other checksums")
        self.quarantined.pop(fs.stem, None)
        event = WindowDelivered(
            event_id=f"delivered:{self.landing.name}:{fs.stem}", file_set=fs.stem, date=fs.date,
            landing=self.landing.name, delivered_at=format_iso(int(time.time() * 1000)) or "",
            files=[DeliveredFile(name=name, sha256=digest, bytes=size) for name, digest, size in digests],
        )
        await self.publish([Outgoing(s.delivered(fs.partition), encoder.encode(event), event.event_id)])
        self.delivered.add(fs.stem)
        return True

    async def _place(self, path: Path, rel: str, digest: str) -> str | None:
        """One file of a set at its final name: sent, or already there and identical (kept);
        otherwise why not (a file with other content is there, and stays)."""
        there = await self.landing.digest(rel)
        if there is None:
            try:
                await self.landing.put(path, rel)
                self.files_sent += 1
                return None
            except LandingExists:
                there = await self.landing.digest(rel)
        else:
            self.files_kept += 1
        if there is not None and there != digest:
            return f"{rel} is already there with other content (sha256 {there}, ours {digest})"
        return None

    def _quarantine(self, fs: FileSet, why: str) -> bool:
        """The set stays out (nothing at the landing zone is replaced); later sets still go."""
        if fs.stem not in self.quarantined:
            log.error("window file set quarantined: not overwritten at the landing zone (check it there)",
                      file_set=fs.stem, landing=self.landing.name, reason=why)
        self.quarantined[fs.stem] = (why, time.monotonic())
        return False

    async def _report_backlog(self, todo: list[FileSet]) -> None:
        now = int(time.time() * 1000)
        messages = []
        for p in self.partitions:
            mine = [fs for fs in todo if fs.partition == p]
            oldest = mine[0] if mine else None
            held = sorted(stem for stem in self.quarantined if partition_of_stem(stem) == p)
            state = (len(mine), oldest.stem if oldest else None, self.last_error, tuple(held))
            if self.gauge is not None:
                self.gauge(PENDING_WINDOWS, len(mine), p)
                age = (now - min(fs.written_ms for fs in mine)) / 1000 if mine else 0.0
                self.gauge(OLDEST_PENDING_AGE, age, p)
                self.gauge(QUARANTINED_WINDOWS, len(held), p)
            if self._last_backlog.get(p) == state:
                continue
            backlog = DeliveryBacklog(
                partition=p, landing=self.landing.name, pending=len(mine),
                oldest_file_set=oldest.stem if oldest else None,
                oldest_written_at=format_iso(min(fs.written_ms for fs in mine)) if mine else None,
                delivered=sum(1 for stem in self.delivered if partition_of_stem(stem) == p),
                last_error=self.last_error, quarantined=len(held), quarantined_file_sets=held,
                at=format_iso(now) or "")
            messages.append(Outgoing(s.delivery_backlog(p), encoder.encode(backlog), f"backlog:{p}:{backlog.at}"))
            self._last_backlog[p] = state
        if messages:
            await self.publish(messages)
